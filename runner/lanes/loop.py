"""The step loop of a lane group: runner.run.loop.train's schedule of steps, records and
evaluations, with one record per live lane. A lane that diverges gets its own ending and is frozen
(its optimizers put its rows back after every later step), the others go on; the loop ends when
its budget is spent or no lane is left. Then the batched task's measurements after training, when it
has them (`assess`), one record per live lane as each comes.

Every lane's record holds what its single run's holds at that step; `time/elapsed_s` and `time_s`
are the group's clocks (the batched computation's time, shared by its lanes).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence

import torch

from runner.lanes.optim import LaneOptimizer
from runner.resume.stops import StopSignals
from runner.run.loop import ASSESSING, Clock, Emit
from runner.task.device import Runtime


def host(values: Mapping[str, torch.Tensor | list | float]) -> dict[str, list[float | None] | float]:
    """Per-lane tensors as lists, shared values as floats (one transfer per metric); a list is already
    per lane, None where a lane's single run records no value (an estimate that did not converge)."""
    return {k: v if isinstance(v, list) else v.detach().double().tolist() if isinstance(v, torch.Tensor) and v.ndim
            else float(v) for k, v in values.items()}


def train(task, opts: Mapping[str, LaneOptimizer], rt: Runtime, emits: Sequence[Emit], *, log_every: int,
          eval_every: int, start: int = 0, clocks: tuple[float, float] = (0.0, 0.0),
          after_step: Callable[[int], None] | None = None,
          ends: list[tuple[int, str] | None] | None = None) -> list[tuple[int, str | None]]:
    """Run the group's budget from step `start` + 1 (lanes resumed there: `clocks` are their training
    and wall time so far); returns each lane's (last step, divergence reason or None). `ends`, when
    given, is filled as lanes diverge (what `after_step` reads to know which lanes go on)."""
    clock = Clock(rt, *clocks)
    total = task.total_steps
    ends = ends if ends is not None else [None] * len(emits)
    live = list(range(len(emits)))
    last_step, last_time = start, clocks[0]
    for step in range(start + 1, total + 1):
        measure = step % log_every == 0 or step == total
        out = task.train_step(opts, measure)
        evaluate = step % eval_every == 0 or step == total
        if not (measure or evaluate):
            if after_step is not None:
                after_step(step)
            continue
        record = dict(out)
        if evaluate:
            with clock.pause():
                record.update(task.evaluate())
        values = host(record)
        now = clock.train_time()
        lrs = {("train/lr" if len(opts) == 1 else f"train/lr_{role}"): o.lrs() for role, o in opts.items()}
        shared = {"time/elapsed_s": now, "time/step_s": (now - last_time) / (step - last_step)}
        last_step, last_time = step, now
        wall = clock.wall()
        for i in live:
            lane = {k: v[i] if isinstance(v, list) else v for k, v in values.items()
                    if not isinstance(v, list) or v[i] is not None}
            reason = emits[i]({"step": step, "time_s": wall, **lane, **{k: v[i] for k, v in lrs.items()}, **shared})
            if reason:
                ends[i] = (step, reason)
                for o in opts.values():
                    o.freeze(i)
                if callable(getattr(task, "lane_ended", None)):  # a task that keeps records of its own (pictures)
                    task.lane_ended(i)
        live = [i for i in live if ends[i] is None]
        if not live:
            break
        if after_step is not None:
            after_step(step)
    return [e or (total, None) for e in ends]


def assess(task, emits: Sequence[Emit], ends: list[tuple[int, str | None]], start: float,
           signals: StopSignals | None = None) -> None:
    """The batched task's measurements after training (`task.assess(ended)`, runner/task/lanes.py),
    as runner.run.loop.assess makes a single run's: each lane's record emitted to its lane as it
    comes (`time_s` from `start`, the group's clock); a lane whose training or a record diverged is
    in `ended` (its reason in `ends`, updated here), and the task yields None for it from then on."""
    ended = {i for i, (_, reason) in enumerate(ends) if reason is not None}
    records = iter(task.assess(ended))
    while True:
        with signals.interruptible(ASSESSING) if signals is not None else contextlib.nullcontext():
            batch = next(records, None)
        if batch is None:
            return
        for i, record in enumerate(batch):
            if record is None or i in ended:
                continue
            if reason := emits[i]({**record, "time_s": time.perf_counter() - start}):
                ends[i] = (ends[i][0], reason)
                ended.add(i)
