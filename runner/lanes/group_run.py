"""A lane group from start to end: each lane started as its single run starts (runner/lanes/lane.py),
the task's batched computation built from the lanes' own tasks, one optimizer per bucket of lanes
sharing hyperparameters, the batched loop, the measurements after training (a task with `assess`),
and each lane ended as its single run ends.

Checkpoints are the single run's (runner/lanes/checkpoints.py): every `checkpoint_every` steps and
when a stop signal arrives, each lane still training saves its own in its folder. A rerun resumes
every lane from its checkpoint; lanes that stand at the same step run as one batched computation
(all of them, unless a kill came between two lanes' saves: then one computation per step found).
A stop signal ends the lanes that diverged as their runs end, the others `interrupted` with their
checkpoint saved, then stops the sweep (under submitit, SIGUSR2 requeues the job: its handler is
called once every lane is wrapped up).

A failure of the batched computation ends its lanes: they are closed, their folders released,
and their jobs handed back to run one by one (`None` in the returned codes), with a line saying so;
each resumes from its checkpoint, if it has one, as its single run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import ContextManager

from omegaconf import DictConfig

from runner.lanes import checkpoints
from runner.lanes import lane as lanes
from runner.lanes.loop import assess, train
from runner.lanes.optim import LaneOptimizer
from runner.resume import checkpoint, stops
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


def run(cfgs: Sequence[DictConfig], enter: Callable[[int], ContextManager],
        ended: Callable[[int, int], None] | None = None, resolved: Sequence[dict] | None = None) -> list[int | None]:
    """Run the jobs `cfgs` (each job's config, `enter(i)` its Hydra context) as one lane group.
    Returns each job's exit code, None for a job that must run on its own. `ended(i, code)`, when
    given, is called in job i's context as its lane ends (completed or diverged; the launcher's end
    of the job under the same set-up of its logging). `resolved`: each config resolved in its
    context, when the launcher has it (runner.run.identity.resolved_config)."""
    codes: list[int | None] = [None] * len(cfgs)
    live: dict[int, lanes.Lane] = {}
    stop = stops.arm()
    for i, cfg in enumerate(cfgs):
        with enter(i):
            got = lanes.start(cfg, resolved[i] if resolved is not None else None)
        if isinstance(got, lanes.Lane):
            live[i] = got
        else:
            codes[i] = got
    made: dict = {}  # the factories of each bucket key, made once
    factories = {i: build.lane_factories(ln.cfg, ln.task, made) for i, ln in live.items()}
    keys = {i: [k for k, _f, _s in factories[i].values()] for i in live}
    parts: dict[int, list[int]] = {}  # by the step the lanes resume after; equal hyperparameters side by side
    for i in sorted(live, key=lambda i: (live[i].start_step, keys[i])):
        parts.setdefault(live[i].start_step, []).append(i)
    waiting = set(live)
    try:
        for order in parts.values():
            waiting -= set(order)
            _part(order, live, [factories[i] for i in order], codes, enter, stop, ended)
    except KeyboardInterrupt as e:
        for i in sorted(waiting):  # not trained in this attempt: their checkpoints (if any) stay as they were
            e_i = stops.Stopped(e.signum, stage="before its lanes ran") if isinstance(e, stops.Stopped) else e
            with enter(i):
                codes[i] = lanes.interrupted(live[i], e_i, live[i].start_step or None)
        stop.pass_on(getattr(e, "signum", 2))  # under submitit on SIGUSR2: requeue this job
        raise
    return codes


def _part(order: list[int], live: dict[int, lanes.Lane], factories: list[dict], codes: list[int | None],
          enter: Callable[[int], ContextManager], stop: stops.StopSignals,
          ended: Callable[[int, int], None] | None = None) -> None:
    """The lanes `order`, all at one step, as one batched computation, each ended (its code set);
    `factories`: their optimizer factories (build.lane_factories), in the same order."""
    part = [live[i] for i in order]
    for k, ln in enumerate(part):  # in summary.json: its wall time overlaps the other lanes' (README "Lanes")
        ln.summary["lanes"] = {"jobs": len(part), "lane": k}
    first, start = part[0], part[0].start_step
    resumed = f", resumed at step {start}" if start else ""
    console.print(f"lanes: {len(order)} jobs as one batched computation{resumed}", highlight=False)
    ends: list[tuple[int, str] | None] = [None] * len(part)
    task = None
    try:
        task, opts = _build(part, factories)
        if start:
            checkpoints.restore(part, opts)
        training = lambda: [k for k, end in enumerate(ends) if end is None]  # noqa: E731

        def after_step(step: int) -> None:
            checkpoint.at_step(step, first.cfg.checkpoint_every, task.total_steps, stop,
                               lambda: checkpoints.save(part, task, opts, step, training()))

        emits, t0 = [ln.rec.emit for ln in part], time.perf_counter()
        got = train(task, opts, first.rt, emits, log_every=first.cfg.log_every,
                    eval_every=first.cfg.eval_every, start=start, clocks=first.clocks, after_step=after_step,
                    ends=ends)
        if first.cfg.checkpoint_every and task.total_steps > start:  # a stop while the lanes end resumes here
            checkpoints.save(part, task, opts, task.total_steps, training())
        if callable(getattr(task, "assess", None)):  # measurements after training (diffusion's sampling)
            assess(task, emits, got, t0, stop)
        task.unstack()  # each lane's final state back into its own task (its figures, its convergence)
    except KeyboardInterrupt as e:
        if task is not None and any(ends):
            with contextlib.suppress(Exception):
                task.unstack()  # the diverged lanes' figures
        for k, i in enumerate(order):
            with enter(i):
                codes[i] = lanes.end(part[k], 0, *ends[k]) if ends[k] and task is not None else \
                    lanes.interrupted(part[k], e)
        raise
    except Exception as e:  # noqa: BLE001 - the group's failure: its jobs run one by one instead
        console.print(f"[red]lanes: the batched computation failed[/] ({type(e).__name__}: {e}); "
                      f"its {len(order)} jobs run one by one", highlight=False, soft_wrap=True)
        for k, i in enumerate(order):
            with enter(i), contextlib.suppress(Exception):
                _abandon(part[k])
        return
    for k, (i, (steps, reason)) in enumerate(zip(order, got)):
        with enter(i):
            codes[i] = lanes.end(part[k], 0, steps, reason)
            if ended is not None:
                ended(i, codes[i])


def _abandon(lane: lanes.Lane) -> None:
    """Close a lane without a summary: its job runs again on its own (from its checkpoint, if any)."""
    lane.rec.close()
    lane.tracker.finish(1, "failed")
    give_back(lane.space)
    lanes.release(lane, None)
