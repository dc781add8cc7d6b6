"""Every object built from config, in one place: the task, its model, the optimizers with their
schedules, and the tracker. Config says which class and which numbers (`_target_`,
`_partial_: true`); this module passes the live objects (runtime, parameters, optimizers)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from runner.device import Runtime
from runner.optim import OptimizerSet
from runner.task import Task
from runner.validate import RUNNER_KEYS


def _without(node: DictConfig, keys: Sequence[str]) -> DictConfig:
    """The node resolved against the whole config, minus the keys the runner reads itself."""
    resolved = OmegaConf.to_container(node, resolve=True)
    return OmegaConf.create({k: v for k, v in resolved.items() if k not in keys})


def task(cfg: DictConfig, runtime: Runtime) -> Task:
    factory = instantiate(_without(cfg.task, ["models"]))
    return factory(runtime=runtime, model=instantiate(cfg.model))


def optimizers(cfg: DictConfig, task: Task) -> dict[str, OptimizerSet]:
    """One optimizer set per trained module, each with the selected schedule. A module's role may
    have its own optimizer config (`+optim@optim_discriminator=adam`), and a task may scale a
    role's learning rates (`task.lr_scale`, e.g. two time scales for a GAN)."""
    schedule = instantiate(cfg.sched)
    sets = {}
    for role, module in task.models().items():
        node = cfg.get(f"optim_{role}") or cfg.optim
        scale = getattr(task, "lr_scale", {}).get(role, 1.0)
        aux = node.get("aux")
        sets[role] = OptimizerSet(module, instantiate(_scaled(_without(node, ["aux", "create_graph"]), scale)),
                                  instantiate(_scaled(aux, scale)) if aux is not None else None,
                                  create_graph=bool(node.get("create_graph", False)))
        sets[role].schedule(schedule)
    return sets


def _scaled(node: DictConfig, scale: float) -> DictConfig:
    node = OmegaConf.create(OmegaConf.to_container(node, resolve=True))
    if scale != 1.0 and "lr" in node:
        node.lr = node.lr * scale
    return node


def tracker(cfg: DictConfig, run_dir: Path, name: str, tags: Sequence[str], group: str | None):
    factory = instantiate(cfg.logger)
    config = OmegaConf.to_container(cfg, resolve=True)
    user_group = cfg.logger.get("group")
    return factory(run_dir=run_dir, config=config, name=name,
                   tags=[*tags, *cfg.logger.get("tags", [])], group=user_group or group)


assert {"aux", "create_graph", "models"} <= RUNNER_KEYS  # keys stripped here are known to validation
