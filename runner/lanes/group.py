"""Which jobs of a sweep run together as lanes, and why the others run one by one.

Two jobs share a group when their resolved configs are equal once the lane-safe keys are left out:
`seed`, every optimizer hyperparameter (`optim.*`, `optim_<role>.*`: not the class, its `aux`
optimizer or `create_graph`), every schedule parameter (`sched.*` but its class) and the task keys
its class declares (`lane_safe`). A group holds at most `max_lanes` jobs. A group's task and
settings must support lanes (`refusal`); otherwise its jobs run one by one, with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from runner.lanes.optim import ELEMENTWISE
from runner.run.identity import NOT_IDENTITY

STRUCTURE = ("_target_", "_partial_", "_convert_", "aux", "create_graph")  # an optimizer or schedule's class and shape


def _task_class(resolved: Mapping[str, Any]) -> Any:
    from hydra.utils import get_object

    return get_object(resolved["task"]["_target_"])


def shape(resolved: Mapping[str, Any]) -> str:
    """What must be equal between the lanes of a group: the config without its lane-safe keys."""
    safe = set(getattr(_task_class(resolved), "lane_safe", ()))
    kept: dict[str, Any] = {}
    for key, value in resolved.items():
        if key == "seed" or key in NOT_IDENTITY:
            continue
        if key in ("sched", "optim") or key.startswith("optim_"):
            value = {k: v for k, v in value.items() if k in STRUCTURE} if isinstance(value, Mapping) else value
        elif key == "task":
            value = {k: v for k, v in value.items() if k not in safe}
        kept[key] = value
    return json.dumps(kept, sort_keys=True, default=str)


def groups(resolved: Sequence[Mapping[str, Any]], max_lanes: int) -> list[list[int]]:
    """The jobs (their indices) in groups of equal shape, in order of first appearance, each cut
    into chunks of at most `max_lanes`."""
    by_shape: dict[str, list[int]] = {}
    for i, cfg in enumerate(resolved):
        by_shape.setdefault(shape(cfg), []).append(i)
    return [jobs[k:k + max_lanes] for jobs in by_shape.values() for k in range(0, len(jobs), max_lanes)]


def refusal(root: Any, resolved: Mapping[str, Any]) -> str | None:
    """Why the jobs of this config cannot run as lanes (None: they can). `root`: one job's config."""
    cls = _task_class(resolved)
    name = resolved["task"]["_target_"].rsplit(".", 1)[-1]
    if not callable(getattr(cls, "lanes", None)):
        return f"task {name} does not run as lanes (yet)"
    for key in [k for k in resolved if k == "optim" or k.startswith("optim_")]:
        node = resolved[key]
        if node.get("aux") is not None or node["_target_"] not in ELEMENTWISE:
            return (f"{key}._target_={node['_target_']}: only elementwise optimizers run as lanes "
                    f"({', '.join(t.rsplit('.', 1)[-1] for t in ELEMENTWISE)}); one that couples the elements "
                    f"of a tensor would couple the lanes stacked in it")
    if resolved["compile"]:
        return f"compile={resolved['compile']}: lanes do not compile (yet)"
    if resolved["metrics"]["sharpness_every"]:
        return "metrics.sharpness_every: sharpness is not measured per lane (yet)"
    return cls.lane_refusal(root)
