"""The step loop: counts steps, decides when to measure, log and evaluate, keeps the clocks.

Between log steps the loop does nothing but call the task's step: metric values stay on the
device and are transferred once per `log_every` steps (one host-device sync). Evaluation and
sharpness measurements are excluded from training time, and the device is synchronised
around every clock reading.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping

import torch

from runner.resume.stops import StopSignals, pause_point
from runner.task.device import Runtime
from runner.task.optim import OptimizerSet
from runner.task.protocol import Task
from runner.task.sharpness import lanczos_top_eigenvalue, top_hessian_eigenvalue

Emit = Callable[[dict[str, float]], str | None]  # returns a reason when the run diverged
ASSESSING = "during the measurements after training (the task's assess())"


class Clock:
    """Training time: wall time minus what was spent in paused sections. A resumed run's clocks
    go on from the times recorded before the interruption (`train0`, `wall0`)."""

    def __init__(self, rt: Runtime, train0: float = 0.0, wall0: float = 0.0):
        self.rt = rt
        self.start = time.perf_counter()
        self.paused_total = 0.0
        self.train0, self.wall0 = train0, wall0

    def train_time(self) -> float:
        self.rt.sync()
        return time.perf_counter() - self.start - self.paused_total + self.train0

    def wall(self) -> float:
        return time.perf_counter() - self.start + self.wall0

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        self.rt.sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.rt.sync()
            self.paused_total += time.perf_counter() - t0


def to_host(values: Mapping[str, torch.Tensor | float]) -> dict[str, float]:
    """One transfer for all tensor values (a single sync), floats passed through. On the CPU there
    is nothing to transfer: reading each scalar costs ~3 us for ten values, stacking them ~25 us."""
    if all(v.is_cpu for v in values.values() if isinstance(v, torch.Tensor)):
        return {k: float(v.item()) if isinstance(v, torch.Tensor) else float(v) for k, v in values.items()}
    keys = [k for k, v in values.items() if isinstance(v, torch.Tensor)]
    host = torch.stack([values[k].detach().float().reshape(()) for k in keys]).tolist()
    return {**{k: float(v) for k, v in values.items() if k not in keys}, **dict(zip(keys, host))}


def train(task: Task, opts: Mapping[str, OptimizerSet], rt: Runtime, emit: Emit, *, log_every: int,
          eval_every: int, sharpness_every: int = 0, sharpness_iters: int = 20, sharpness_lanczos: bool = False,
          start: int = 0,
          clocks: tuple[float, float] = (0.0, 0.0),
          after_step: Callable[[int], None] | None = None) -> tuple[int, str | None]:
    """Run the task's budget from step `start` + 1 (a resumed run: `clocks` are its training and
    wall time so far). `after_step(step)` runs at the end of every step, once the step's record is
    out (checkpoints, stop requests). Returns (last step, divergence reason or None)."""
    clock = Clock(rt, *clocks)
    last_step, last_time = start, clocks[0]
    total = task.total_steps
    for step in range(start + 1, total + 1):
        measure = step % log_every == 0 or step == total
        out = task.train_step(opts, measure)
        evaluate = step % eval_every == 0 or step == total
        sharpness = sharpness_every > 0 and step % sharpness_every == 0
        if not (measure or evaluate or sharpness):
            if after_step is not None:
                after_step(step)
            continue
        record = dict(out)
        if sharpness:
            with clock.pause():
                params = [p for o in opts.values() for p in o.params]
                record["train/sharpness"] = top_hessian_eigenvalue(task.sharpness_loss(), params, sharpness_iters)
                if sharpness_lanczos:
                    record["train/sharpness_lanczos"] = lanczos_top_eigenvalue(task.sharpness_loss(), params)
        if evaluate:
            with clock.pause():
                for o in opts.values():
                    o.eval()
                record.update(task.evaluate())  # stays on the device: one transfer below for all values
                for o in opts.values():
                    o.train()
        values = to_host(record)
        now = clock.train_time()
        for role, o in opts.items():
            values["train/lr" if len(opts) == 1 else f"train/lr_{role}"] = o.lr
        values["time/elapsed_s"] = now
        values["time/step_s"] = (now - last_time) / (step - last_step)
        last_step, last_time = step, now
        reason = emit({"step": step, "time_s": clock.wall(), **values})
        if reason:
            return step, reason
        if after_step is not None:
            after_step(step)
    return total, None


def assess(task: Task, emit: Emit, start: float, signals: StopSignals | None = None) -> str | None:
    """The task's measurements after training (the optional hook `task.assess()`, e.g. a diffusion
    sampler at every step count of its grid): each record is emitted as it comes, `time_s` counted
    from `start` (the run's perf_counter origin). A stop signal ends the task's computation at once
    (`signals`), never a record being written. Returns the divergence reason or None."""
    records = iter(task.assess())
    while True:
        with signals.interruptible(ASSESSING) if signals is not None else contextlib.nullcontext():
            pause_point("assess")
            record = next(records, None)
        if record is None:
            return None
        reason = emit({**record, "time_s": time.perf_counter() - start})
        if reason:
            return reason
