"""Stop signals at every stage of a run: Ctrl-C (SIGINT), SIGTERM and SIGUSR2 (SLURM's warning
before preemption or the time limit) end a run with an `interrupted` summary and exit code 130,
143 or 140, whatever the run was doing.

One handler per process, installed when the first job starts (`arm`, in the `runner` app before
torch is imported) and kept between the jobs of a sweep. A signal is recorded; where it acts:

- training loop: at the next step boundary, after saving a checkpoint (runner.resume.checkpoint);
- `interruptible` sections (building the task, a task's measurements after training): at once;
- anywhere else (the folder's files, wandb, a summary being written): at the next `check`, so
  no file is left half moved or half written. A run that finished its work in the meantime is
  completed; the signal then stops a sweep before its next job (`check` at the job's start).

A second Ctrl-C stops at once, except while the summary is written (`protected`). Handlers found
before (submitit's requeue on SIGUSR2) are called once the run is wrapped up (`pass_on`).
No torch here: `runner --help` and the import window stay fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGUSR2", None)) if s is not None)
PAUSE_ENV = "RUNNER_PAUSE_AT"  # tests/test_faults_*.py: stop at a named moment (`pause_point`)


def exit_code(signum: int) -> int:
    return 130 if signum == signal.SIGINT else 128 + signum


def name(signum: int) -> str:
    return signal.Signals(signum).name


class Stopped(KeyboardInterrupt):
    """The run stopped on a signal: at a step boundary of the loop with its checkpoint saved
    (`step`), or elsewhere (`stage`: "during start-up", ...)."""

    def __init__(self, signum: int, step: int | None = None, stage: str | None = None):
        self.signum, self.step, self.stage = signum, step, stage
        self.exit_code = exit_code(signum)
        where = f"at step {step}; checkpoint saved" if step is not None else stage or "at once"
        super().__init__(f"stopped by {name(signum)} {where}")


class StopSignals:
    """The process's stop-signal state (module docstring). `received` is the signal not yet acted
    on (the training loop's checkpointer reads it at every step boundary)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous: dict[int, Any] = {}
        self.armed = self.immediate = self.protected = False
        self.stage: str | None = None
        self.pause_at: str | None = None
        self.passes: dict[str, int] = {}  # pause_point: times each moment was passed

    def _handle(self, signum: int, frame: Any) -> None:
        if self.immediate:
            self.received = None
            raise Stopped(signum, stage=self.stage)
        if self.received == signal.SIGINT and signum == signal.SIGINT and not self.protected:
            raise KeyboardInterrupt  # a second Ctrl-C: at once
        self.received = signum

    def arm(self) -> StopSignals:
        """Install the handlers (once per process; only the main thread can: elsewhere, a launcher
        running jobs in threads, signals keep their default handling)."""
        if os.environ.get(PAUSE_ENV) != self.pause_at:  # counted per process: one pause in a sweep
            self.pause_at, self.passes = os.environ.get(PAUSE_ENV), {}
        if self.armed or threading.current_thread() is not threading.main_thread():
            return self
        self.previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        self.armed = True
        return self

    def disarm(self) -> None:
        """Put the handlers found by `arm` back, and forget any signal received."""
        if self.armed:
            for s, handler in self.previous.items():
                signal.signal(s, signal.SIG_DFL if handler is None else handler)
        self.armed, self.received, self.immediate, self.protected = False, None, False, False

    def check(self, stage: str) -> None:
        """Act on a signal received since the last check: raise Stopped."""
        if self.received is not None:
            signum, self.received = self.received, None
            raise Stopped(signum, stage=stage)

    @contextlib.contextmanager
    def interruptible(self, stage: str) -> Iterator[None]:
        """Work that may take long and leaves no file half written: a signal stops it at once."""
        self.immediate, self.stage = True, stage
        try:
            self.check(stage)  # one that came before
            yield
        finally:
            self.immediate = False

    @contextlib.contextmanager
    def protect(self) -> Iterator[None]:
        """Even a second Ctrl-C waits until this section is over (the summary being written)."""
        self.protected = True
        try:
            yield
        finally:
            self.protected = False

    def pass_on(self, signum: int) -> None:
        """Call the handler that was there before for `signum`: under submitit, SIGUSR2 checkpoints
        the job's submission and requeues it (it resumes from the run's checkpoint)."""
        handler = self.previous.get(signum)
        if callable(handler) and signum != signal.SIGINT:
            handler(signum, None)


signals = StopSignals()  # signal handlers are per process


def arm() -> StopSignals:
    return signals.arm()


def disarm() -> None:
    signals.disarm()


def pause_point(moment: str) -> None:
    """A named moment of a run's life, where the fault-injection tests stop it: with
    RUNNER_PAUSE_AT=<moment> (or <moment>#<k>: its k-th time in the process) the run says so on
    stderr and waits here until a stop signal arrives (then carries on as it would with that
    signal) or a kill -9 ends it. Otherwise a no-op (a string comparison; the variable is read
    when a run starts)."""
    if signals.pause_at is None or not signals.pause_at.startswith(moment):
        return
    name, _, k = signals.pause_at.partition("#")
    signals.passes[moment] = signals.passes.get(moment, 0) + 1
    if name != moment or signals.passes[moment] != int(k or 1):
        return
    print(f"runner: paused at {signals.pause_at} ({PAUSE_ENV})", file=sys.stderr, flush=True)
    while signals.received is None:
        time.sleep(0.01)
