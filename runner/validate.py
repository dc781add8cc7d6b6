"""Check the whole config before any work starts and report every problem at once, each
naming the key, the value found and what is allowed (after torchtune's `config/_validate.py`).

Keys of classes built from config (`task`, `optim`, `sched`, `model`) are checked against the
real constructor's signature; tasks add their own value checks through a `check(cfg)` staticmethod that sees the whole config.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping

import torch
from hydra.utils import get_object
from omegaconf import DictConfig

from runner.device import DEVICE_PATTERN, PRECISIONS

# Keys the runner reads from a node itself; they are not constructor arguments.
RUNNER_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_", "aux", "create_graph", "models"}
LOGGER_MODES = ("online", "offline", "disabled")
# Config groups (null in conf/config.yaml) that only some tasks read, as a constructor argument
# of that name (conf/task/diffusion.yaml: `sampler: ${sampler}`).
TASK_GROUPS = ("sampler",)


class ConfigError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid config: " + "; ".join(problems))


def validate(cfg: DictConfig, choices: Mapping[str, str]) -> None:
    """Raise ConfigError listing every problem; `choices` maps group to selected option."""
    problems = [*_top_level(cfg), *_node("sched", cfg.sched, live=("optimizer",)),
                *_node("model", cfg.model, live=("in_shape", "num_classes")), *_task(cfg, choices)]
    for key in [k for k in cfg if k == "optim" or str(k).startswith("optim_")]:  # optim_<role> too
        problems += _node(key, cfg[key])
        if "aux" in cfg[key]:
            problems += _node(f"{key}.aux", cfg[key].aux)
    if problems:
        raise ConfigError(problems)


def _top_level(cfg: DictConfig) -> Iterable[str]:
    if not isinstance(cfg.seed, int):
        yield f"seed={cfg.seed!r}: must be an integer"
    dev = str(cfg.device)
    if not DEVICE_PATTERN.fullmatch(dev):
        yield f"device={dev!r}: unknown device; allowed: auto, cpu, cuda, cuda:N"
    elif dev.startswith("cuda") and not torch.cuda.is_available():
        yield f"device={dev}: no CUDA device is visible; use device=auto or device=cpu"
    elif dev.startswith("cuda:") and int(dev[5:]) >= torch.cuda.device_count():
        yield f"device={dev}: only {torch.cuda.device_count()} CUDA device(s) visible (cuda:0..)"
    threads = cfg.threads
    if threads != "auto" and not (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1):
        yield f"threads={threads!r}: allowed: auto, or an integer >= 1 (CPU threads per run)"
    if cfg.precision not in PRECISIONS:
        yield f"precision={cfg.precision!r}: allowed: {', '.join(PRECISIONS)}"
    if not isinstance(cfg.compile, bool):
        yield f"compile={cfg.compile!r}: must be true or false"
    for key in ("log_every", "eval_every"):
        if not (isinstance(cfg[key], int) and cfg[key] > 0):
            yield f"{key}={cfg[key]!r}: must be a positive integer (steps)"
    if not (isinstance(cfg.checkpoint_every, int) and cfg.checkpoint_every >= 0):
        yield f"checkpoint_every={cfg.checkpoint_every!r}: must be an integer >= 0 (steps; 0 = only when interrupted)"
    if cfg.objective.use not in ("final", "best"):
        yield f"objective.use={cfg.objective.use!r}: allowed: final, best"
    m = cfg.metrics
    if not 0 < m.fit_tail <= 1:
        yield f"metrics.fit_tail={m.fit_tail}: must be in (0, 1]"
    if not (isinstance(m.sharpness_every, int) and m.sharpness_every >= 0):
        yield f"metrics.sharpness_every={m.sharpness_every!r}: must be an integer >= 0 (0 = off)"
    if any(not eps > 0 for eps in m.thresholds):
        yield f"metrics.thresholds={list(m.thresholds)}: every threshold must be > 0"
    mode = cfg.logger.get("mode")
    if mode is not None and mode not in LOGGER_MODES:
        yield f"logger.mode={mode!r}: allowed: {', '.join(LOGGER_MODES)}"


def _node(name: str, node: DictConfig, live: tuple[str, ...] = ("params",)) -> Iterable[str]:
    """Unknown keys and bad learning rates of a node built through `_target_`."""
    try:
        target = get_object(node._target_)
    except Exception as e:  # noqa: BLE001 - any import failure is the user's to see
        yield f"{name}._target_={node._target_}: cannot be imported ({e})"
        return
    if "lr" in node and not (isinstance(node.lr, (int, float)) and node.lr > 0):
        yield f"{name}.lr={node.lr!r}: the learning rate must be > 0"
    sig = inspect.signature(target)
    params = sig.parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return  # the class takes **kwargs: it validates its own extras
    allowed = [p for p in params if p not in live and p != "self"]
    for key in node:
        if key not in RUNNER_KEYS and key not in params:
            yield f"{name}.{key}: not an argument of {node._target_}; allowed: {', '.join(allowed)}"


def _task(cfg: DictConfig, choices: Mapping[str, str]) -> Iterable[str]:
    yield from _node("task", cfg.task, live=("runtime", "model"))
    fits = cfg.task.get("models")
    model = choices.get("model")
    if fits is not None and model is not None and model not in fits:
        yield (f"model={model}: does not fit task={choices.get('task')}; "
               f"models that fit: {', '.join(fits)}")
    task_class = get_object(cfg.task._target_)
    if cfg.metrics.sharpness_every and not hasattr(task_class, "sharpness_loss"):
        yield (f"metrics.sharpness_every={cfg.metrics.sharpness_every}: task={choices.get('task')} "
               f"has no sharpness measurement; use metrics.sharpness_every=0")
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
