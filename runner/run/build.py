"""Every object built from config, in one place: the task, its model, the optimizers with their
schedules, and the tracker. Config says which class and which numbers (`_target_`,
`_partial_: true`); this module passes the live objects (runtime, parameters, optimizers)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from runner.task.device import Runtime
from runner.task.optim import OptimizerFactory, OptimizerSet, SchedulerFactory
from runner.task.protocol import Task


def _plain(node: DictConfig, drop: Sequence[str] = (), lr_scale: float = 1.0,
           values: Mapping[str, float] | None = None) -> DictConfig:
    """The node resolved against the whole config, minus the keys the runner reads itself
    (runner.validation.classes.RUNNER_KEYS), with the task's `values` set and its learning rate scaled."""
    resolved = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in drop}
    resolved |= values or {}
    if lr_scale != 1.0 and "lr" in resolved:
        resolved["lr"] *= lr_scale
    return OmegaConf.create(resolved)


def task(cfg: DictConfig, runtime: Runtime) -> Task:
    factory = instantiate(_plain(cfg.task, drop=["models"]))
    return factory(runtime=runtime, model=instantiate(cfg.model))


def optimizer_nodes(cfg: DictConfig, task: Task) -> dict[str, tuple[DictConfig, DictConfig | None, bool]]:
    """Each trained role's optimizer node and `aux` node, plain (resolved, the task's lr scale and
    values applied), and whether it needs `create_graph`. A module's role may have its own optimizer
    config (`+optim@optim_discriminator=adam`), and a task may scale a role's learning rates
    (`task.lr_scale`, e.g. two time scales for a GAN) or set keys of a role's optimizer
    (`task.optim_values`, e.g. step sizes computed from the problem: {"model": {"lr": 0.5}})."""
    nodes = {}
    for role in task.models():
        node = cfg.get(f"optim_{role}") or cfg.optim
        scale = getattr(task, "lr_scale", {}).get(role, 1.0)
        aux, values = node.get("aux"), getattr(task, "optim_values", {}).get(role)
        nodes[role] = (_plain(node, drop=["aux", "create_graph"], lr_scale=scale, values=values),
                       _plain(aux, lr_scale=scale) if aux is not None else None, bool(node.get("create_graph", False)))
    return nodes


def optimizers(cfg: DictConfig, task: Task) -> dict[str, OptimizerSet]:
    """One optimizer set per trained module (`optimizer_nodes`), each with the selected schedule."""
    schedule = instantiate(cfg.sched)
    sets = {}
    for role, (node, aux, create_graph) in optimizer_nodes(cfg, task).items():
        sets[role] = OptimizerSet(task.models()[role], instantiate(node),
                                  instantiate(aux) if aux is not None else None, create_graph=create_graph)
        sets[role].schedule(schedule)
    return sets


def lane_factories(cfg: DictConfig, task: Task, made: dict | None = None,
                   ) -> dict[str, tuple[str, OptimizerFactory, SchedulerFactory]]:
    """For a lane of a group (runner/lanes/): each role's bucket key (its optimizer and schedule
    as plain values: lanes with equal keys may share one optimizer), optimizer and schedule factories.
    `made`: {key: factories} shared by the lanes of a group, so equal keys are instantiated once."""
    made = {} if made is None else made
    out = {}
    for role, (node, _aux, _graph) in optimizer_nodes(cfg, task).items():
        key = json.dumps([OmegaConf.to_container(node), OmegaConf.to_container(cfg.sched, resolve=True)],
                         sort_keys=True, default=str)
        if key not in made:
            made[key] = (instantiate(node), instantiate(cfg.sched))
        out[role] = (key, *made[key])
    return out


def tracker(cfg: DictConfig, config: dict, run_dir: Path, name: str, tags: Sequence[str], group: str | None,
            run_id: str | None = None, alongside: bool = False):
    """`config`: what the tracker's run records as its config (the resolved config and the run's
    provenance); `run_id`: the id of the tracker's run to continue (a run resumed from its checkpoint);
    `alongside`: other runs of this process stay open while this one runs (the lanes of a group)."""
    factory = instantiate(cfg.logger)
    user_group = cfg.logger.get("group")
    extra = {"alongside": True} if alongside else {}
    return factory(run_dir=run_dir, config=config, name=name,
                   tags=[*tags, *cfg.logger.get("tags", [])], group=user_group or group, run_id=run_id, **extra)
