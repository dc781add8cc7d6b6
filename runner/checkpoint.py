"""Checkpoints, and stopping at a step boundary on a signal.

`checkpoint.pt` holds the models, the optimizers with their schedulers, the task's own state
(`state_dict()` when it has one), every RNG (python, numpy, torch, CUDA), the step and the wandb
run id. It is saved every `checkpoint_every` steps and when a stop signal arrives, loaded by a
run of the same config started in the same folder, and removed once the run has finished.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(run_dir: Path, digest: str, step: int, task: Any, opts: Mapping[str, Any], tracker_id: str | None) -> None:
    """Write the checkpoint atomically (a crash while saving leaves the previous one intact)."""
    state = {"config_digest": digest, "step": step, "wandb_id": tracker_id, "rng": rng_state(),
             "models": {role: m.state_dict() for role, m in task.models().items()},
             "optimizers": {role: o.state_dict() for role, o in opts.items()},
             "task": task.state_dict() if callable(getattr(task, "state_dict", None)) else None}
    tmp = run_dir / f".{CHECKPOINT}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, run_dir / CHECKPOINT)


def load(run_dir: Path, digest: str) -> dict[str, Any] | None:
    """This folder's checkpoint if it was written by a run of the same config."""
    path = run_dir / CHECKPOINT
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: RNG states are not tensors
    return state if state.get("config_digest") == digest else None


def restore(state: Mapping[str, Any], task: Any, opts: Mapping[str, Any]) -> None:
    """Put a freshly built task and its optimizers in the checkpoint's state, RNGs last (building
    the task drew from them)."""
    for role, module in task.models().items():
        module.load_state_dict(state["models"][role])
    for role, o in opts.items():
        o.load_state_dict(state["optimizers"][role])
    if state["task"] is not None:
        task.load_state_dict(state["task"])
    set_rng_state(state["rng"])


def remove(run_dir: Path) -> None:
    (run_dir / CHECKPOINT).unlink(missing_ok=True)


# ---- stop signals -----------------------------------------------------------------------------
class Stopped(KeyboardInterrupt):
    """The run stopped at a step boundary on a signal, its checkpoint saved."""

    def __init__(self, signum: int, step: int):
        self.signum, self.step = signum, step
        self.exit_code = 130 if signum == signal.SIGINT else 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; checkpoint saved")


class StopSignals:
    """While active, SIGINT (first Ctrl-C), SIGTERM and SIGUSR2 (SLURM's preemption and time-limit
    warning) ask the loop to stop at the next step boundary. A second Ctrl-C stops at once.
    Handlers found before (submitit's requeue on SIGUSR2) are called once the run is wrapped up."""

    SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGUSR2", None)) if s is not None)

    def __init__(self) -> None:
        self.received: int | None = None
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> StopSignals:
        try:
            for s in self.SIGNALS:
                self.previous[s] = signal.signal(s, self._handle)
        except ValueError:  # not the main thread (a launcher running jobs in threads): default handling
            self.previous.clear()
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def pass_on(self) -> None:
        """Call the handler that was there before for the signal received (after __exit__): under
        submitit this checkpoints the job's submission and requeues it."""
        handler = self.previous.get(self.received) if self.received is not None else None
        if callable(handler) and self.received != signal.SIGINT:
            handler(self.received, None)


class Checkpointer:
    """The training loop's `after_step`: saves every `every` steps (0: never), and when one of
    `signals` arrived, saves and raises Stopped."""

    def __init__(self, run_dir: Path, digest: str, every: int, task: Any, opts: Mapping[str, Any],
                 tracker_id: str | None, signals: StopSignals):
        self.run_dir, self.digest, self.every, self.signals = run_dir, digest, every, signals
        self.task, self.opts, self.tracker_id = task, opts, tracker_id

    def __call__(self, step: int) -> None:
        received = self.signals.received
        periodic = self.every and step % self.every == 0 and step < self.task.total_steps
        if received is not None or periodic:
            save(self.run_dir, self.digest, step, self.task, self.opts, self.tracker_id)
        if received is not None:
            raise Stopped(received, step)
