"""A lane group from start to end: each lane started as its single run starts (runner/lanes/lane.py),
the task's batched computation built from the lanes' own tasks, one optimizer per bucket of lanes
sharing hyperparameters, the batched loop, the measurements after training (a task with `assess`),
and each lane ended as its single run ends.

A failure of the batched computation ends the group: its lanes are closed, their folders released,
and their jobs handed back to run one by one (`None` in the returned codes), with a line saying so.
A stop signal ends every lane `interrupted` (lanes keep no checkpoint) and stops the sweep.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import ContextManager

from omegaconf import DictConfig

from runner.lanes import lane as lanes
from runner.lanes.loop import assess, train
from runner.lanes.optim import LaneOptimizer
from runner.resume import stops
from runner.run import build
from runner.run.metrics import give_back
from runner.run.outcome import console


def _runs(keys: Sequence[str]) -> list[int]:
    """Lengths of the runs of equal keys, in order: a role's buckets."""
    sizes: list[int] = []
    for i, k in enumerate(keys):
        if i and k == keys[i - 1]:
            sizes[-1] += 1
        else:
            sizes.append(1)
    return sizes


def _build(started: Sequence[lanes.Lane], factories: Sequence[dict]) -> tuple[object, dict[str, LaneOptimizer]]:
    """The batched task and its optimizers, lanes in the order given (bucket by bucket), each lane's
    `factories` (build.lane_factories) in the same order."""
    roles = list(factories[0])
    sizes = {r: _runs([f[r][0] for f in factories]) for r in roles}
    task = type(started[0].task).lanes([ln.task for ln in started], sizes)
    opts = {}
    for r in roles:
        firsts = [sum(sizes[r][:b]) for b in range(len(sizes[r]))]  # a bucket's first lane holds its factories
        opts[r] = LaneOptimizer(task.models()[r].buckets(), [factories[i][r][1] for i in firsts],
                                [factories[i][r][2] for i in firsts])
    return task, opts


def run(cfgs: Sequence[DictConfig], enter: Callable[[int], ContextManager]) -> list[int | None]:
    """Run the jobs `cfgs` (each job's config, `enter(i)` its Hydra context) as one lane group.
    Returns each job's exit code, None for a job that must run on its own."""
    codes: list[int | None] = [None] * len(cfgs)
    live: dict[int, lanes.Lane] = {}
    stop = stops.arm()
    for i, cfg in enumerate(cfgs):
        with enter(i):
            got = lanes.start(cfg)
        if isinstance(got, lanes.Lane):
            live[i] = got
        else:
            codes[i] = got
    if not live:
        return codes
    factories = {i: build.lane_factories(ln.cfg, ln.task) for i, ln in live.items()}
    order = sorted(live, key=lambda i: [k for k, _f, _s in factories[i].values()])  # stable: equal hyperparameters side by side
    first = live[order[0]]
    console.print(f"lanes: {len(order)} jobs as one batched computation", highlight=False)
    try:
        task, opts = _build([live[i] for i in order], [factories[i] for i in order])
        emits, t0 = [live[i].rec.emit for i in order], time.perf_counter()
        ends = train(task, opts, first.rt, emits, log_every=first.cfg.log_every,
                     eval_every=first.cfg.eval_every, after_step=lambda step: stop.check(f"at step {step}"))
        if callable(getattr(task, "assess", None)):  # measurements after training (diffusion's sampling)
            assess(task, emits, ends, t0, stop)
        task.unstack()  # each lane's final state back into its own task (its figures, its convergence)
    except KeyboardInterrupt as e:
        for i in order:
            with enter(i):
                codes[i] = lanes.interrupted(live[i], e)
        raise
    except Exception as e:  # noqa: BLE001 - the group's failure: its jobs run one by one instead
        console.print(f"[red]lanes: the batched computation failed[/] ({type(e).__name__}: {e}); "
                      f"its {len(order)} jobs run one by one", highlight=False, soft_wrap=True)
        for i in order:
            with enter(i), contextlib.suppress(Exception):
                _abandon(live[i])
        return codes
    for i, (steps, reason) in zip(order, ends):
        with enter(i):
            codes[i] = lanes.end(live[i], 0, steps, reason)
    return codes


def _abandon(lane: lanes.Lane) -> None:
    """Close a lane without a summary: its job runs again on its own, from step 0."""
    lane.rec.close()
    lane.tracker.finish(1, "failed")
    give_back(lane.space)
    lanes.release(lane, None)
