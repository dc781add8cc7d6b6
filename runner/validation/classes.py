"""The validator's second pass (runner/validation/validate.py), on a config whose values passed the first:
what needs the classes themselves, so torch and the task's module are imported. Keys of classes
built from config (`task`, `optim`, `sched`, `model`) are checked against the real constructor's
signature; tasks add their own checks through a `check(cfg)` staticmethod that sees the whole
config and can rely on every value having its declared type and range.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping

from omegaconf import DictConfig

# Keys the runner reads from a node itself; they are not constructor arguments.
RUNNER_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_", "aux", "create_graph", "models"}
# Config groups (null in conf/config.yaml) that only some tasks read, as a constructor argument
# of that name (conf/task/diffusion.yaml: `sampler: ${sampler}`; conf/task/objective.yaml: `problem`).
TASK_GROUPS = ("sampler", "problem")


def deep_problems(cfg: DictConfig, choices: Mapping[str, str], devices: bool = True) -> list[str]:
    """The second pass, on a config whose values passed `problems`: imports the classes (torch).
    `devices=False`: the job may run on another machine (a sweep's check before launch)."""
    import torch

    found = []
    dev = str(cfg.device)
    if not devices:
        pass
    elif dev.startswith("cuda") and not torch.cuda.is_available():
        found.append(f"device={dev}: no CUDA device is visible; use device=auto or device=cpu")
    elif dev.startswith("cuda:") and int(dev[5:]) >= torch.cuda.device_count():
        found.append(f"device={dev}: only {torch.cuda.device_count()} CUDA device(s) visible (cuda:0..)")
    found += [*_node("sched", cfg.sched, live=("optimizer",)), *_node("model", cfg.model, live=("in_shape", "num_classes"))]
    for key in [k for k in cfg if k == "optim" or str(k).startswith("optim_")]:  # optim_<role> too
        found += _node(key, cfg[key])
        if "aux" in cfg[key]:
            found += _node(f"{key}.aux", cfg[key].aux)
    return found + list(_task(cfg, choices))


def _node(name: str, node: DictConfig, live: tuple[str, ...] = ("params",)) -> Iterable[str]:
    """Keys of a node built through `_target_` that its class does not take."""
    from hydra.utils import get_object

    try:
        target = get_object(node._target_)
    except Exception as e:  # noqa: BLE001 - any import failure is the user's to see
        yield f"{name}._target_={node._target_}: cannot be imported ({e})"
        return
    params = inspect.signature(target).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return  # the class takes **kwargs: it validates its own extras
    allowed = [p for p in params if p not in live and p != "self"]
    for key in node:
        if key not in RUNNER_KEYS and key not in params:
            yield f"{name}.{key}: not an argument of {node._target_}; allowed: {', '.join(allowed)}"


def _task(cfg: DictConfig, choices: Mapping[str, str]) -> Iterable[str]:
    from hydra.utils import get_object

    yield from _node("task", cfg.task, live=("runtime", "model"))
    try:
        task_class = get_object(cfg.task._target_)
    except Exception:  # noqa: BLE001 - _node has said why
        return
    if cfg.metrics.sharpness_every and not hasattr(task_class, "sharpness_loss"):
        yield (f"metrics.sharpness_every={cfg.metrics.sharpness_every}: task={choices.get('task')} "
               f"has no sharpness measurement; use metrics.sharpness_every=0")
    if cfg.precision == "fp64" and not getattr(task_class, "fp64", False):
        yield (f"precision=fp64: task={choices.get('task')} does not compute in float64 (its class sets no "
               f"`fp64 = True`); use precision=fp32, bf16 or auto")
    takes = inspect.signature(task_class).parameters
    for group in TASK_GROUPS:
        if group in cfg and group not in takes:
            yield (f"{group}={choices.get(group)}: task={choices.get('task')} takes no {group}; "
                   f"remove {group}=... (the {group} group is for tasks with a `{group}` argument)")
        elif group in cfg:
            yield from _node(group, cfg[group], live=())
    check = getattr(task_class, "check", None)
    if callable(check):
        yield from check(cfg)
