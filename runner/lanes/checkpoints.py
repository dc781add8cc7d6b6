"""Checkpoints of a lane group: each lane's own `checkpoint.pt`, in its own folder and in the single
run's format (runner/resume/checkpoint.py), so that its job resumes from it as a lane or alone.

Saving writes every lane's state back into its own task first (the batched task's `unstack()`),
then cuts each bucket optimizer's state into its lanes' rows: a lane's optimizer state is what its
single run's optimizer holds (one torch optimizer over the task's parameters, in their order),
its schedule's state its bucket's. Resuming stacks them back: lanes that resume together stand at
the same step, so their step counts and schedules are equal. Each file is written atomically, one
lane after the other: a kill between two leaves each folder with a whole checkpoint, some a step
interval older than others; those lanes resume in a group of their own (runner/lanes/group_run.py).
The global RNGs a lane keeps are its own run's as built (or restored): tasks that run as lanes draw
no global randomness while they train (their `lane_refusal`), so they are what its single run holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from runner.lanes.optim import LaneOptimizer
from runner.resume import checkpoint, stops

# torch's elementwise optimizers keep per-element tensors shaped as their parameter, and these
# shared ones (a step count, NAdam's momentum product) as 0-d tensors: equal across a bucket's lanes
SHARED = ("step", "mu_product")


class Saved:
    """A lane's optimizer state as its single run's OptimizerSet gives it (`state_dict()`)."""

    def __init__(self, state: dict):
        self.state = state

    def state_dict(self) -> dict:
        return self.state


def _per_element(key: str, value: Any, shape: torch.Size) -> bool:
    return torch.is_tensor(value) and key not in SHARED and value.shape == shape


def lane_state(opt: LaneOptimizer, lane: int) -> dict:
    """Lane `lane`'s rows of its bucket's optimizer state, as its single run's optimizer state."""
    b, row = opt._rows[lane]
    whole, params = opt.optimizers[b].state_dict(), opt.buckets[b]
    state = {pid: {k: v[row].clone() if _per_element(k, v, params[pid].shape) else v for k, v in per.items()}
             for pid, per in whole["state"].items()}
    schedules = [opt.schedulers[b].state_dict()] if opt.schedulers else []
    return {"optimizers": [{"state": state, "param_groups": whole["param_groups"]}], "schedulers": schedules}


def load_states(opt: LaneOptimizer, states: Sequence[Mapping]) -> None:
    """The lanes' single-run optimizer states (`states`, in lane order) into the bucket optimizers."""
    k = 0
    for b, (o, params) in enumerate(zip(opt.optimizers, opt.buckets)):
        lanes = [s["optimizers"] for s in states[k:k + opt.sizes[b]]]
        if any(len(s) != 1 for s in lanes):
            raise ValueError(f"a lane's checkpoint holds {len(lanes[0])} optimizers for one role; lanes keep one")
        first = lanes[0][0]
        stacked = {pid: {key: torch.stack([s[0]["state"][pid][key] for s in lanes])
                         if _per_element(key, v, params[pid].shape[1:]) else v for key, v in per.items()}
                   for pid, per in first["state"].items()}
        o.load_state_dict({"state": stacked, "param_groups": first["param_groups"]})
        if opt.schedulers:
            opt.schedulers[b].load_state_dict(states[k]["schedulers"][0])
        k += opt.sizes[b]


def save(lanes: Sequence[Any], task: Any, opts: Mapping[str, LaneOptimizer], step: int, which: Sequence[int]) -> None:
    """Each lane of `which` (positions in `lanes`, the batched order) saves its checkpoint at `step`."""
    task.unstack()
    for i in which:
        ln = lanes[i]
        own = {role: Saved(lane_state(o, i)) for role, o in opts.items()}
        checkpoint.save(ln.run_dir, ln.summary["config_digest"], step, ln.task, own, ln.tracker.id, rngs=ln.rngs)
        stops.pause_point("lane_checkpoint")  # tests/lanes/test_lanes_resume.py: a kill between two lanes' saves


def restore(lanes: Sequence[Any], opts: Mapping[str, LaneOptimizer]) -> None:
    """The optimizers of lanes resumed from their checkpoints (`lane.state`), all at one step."""
    for role, o in opts.items():
        load_states(o, [ln.state["optimizers"][role] for ln in lanes])
