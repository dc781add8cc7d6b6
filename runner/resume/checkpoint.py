"""Checkpoints, and stopping at a step boundary on a signal.

`checkpoint.pt` holds the models, the optimizers with their schedulers, the task's own state
(`state_dict()` when it has one), every RNG (python, numpy, torch, CUDA), the step and the wandb
run id. It is saved every `checkpoint_every` steps and when a stop signal arrives, loaded by a
run of the same config started in the same folder, and removed once the run has finished.

It is read with `torch.load(weights_only=True)`, which builds tensors and Python's own containers
and numbers only and never runs code from the file, so all it holds is plain (`save` checks).
A file that is not a valid checkpoint of this config is set aside, never executed: the run says
so and starts from step 0.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from runner.resume import aside, checkpoint_format, rng

CHECKPOINT = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that passed `load` but does not fit what this config builds."""


def save(run_dir: Path, digest: str, step: int, task: Any, opts: Mapping[str, Any], tracker_id: str | None,
         rngs: Mapping[str, Any] | None = None) -> None:
    """Write the checkpoint atomically (a crash while saving leaves the previous one intact). `rngs`:
    the generators' states to keep (default: the process's now; a lane keeps its own run's)."""
    state = {"config_digest": digest, "step": step, "wandb_id": tracker_id, "rng": rngs or rng.state(),
             "models": {role: m.state_dict() for role, m in task.models().items()},
             "optimizers": {role: o.state_dict() for role, o in opts.items()},
             "task": task.state_dict() if callable(getattr(task, "state_dict", None)) else None}
    if (where := checkpoint_format.not_plain(state, "checkpoint")) is not None:
        raise TypeError(f"{where} cannot be saved in a checkpoint: torch.load(weights_only=True) reads tensors and "
                        f"Python's own containers and numbers only (a task's state_dict() converts the rest)")
    tmp = run_dir / f".{CHECKPOINT}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, run_dir / CHECKPOINT)


def load(run_dir: Path, digest: str) -> dict[str, Any] | None:
    """This folder's checkpoint if it is a valid one of the config `digest`. Otherwise None: a file
    that is not is set aside (`checkpoint.pt.rejected-<time>`), and so are the records the run
    would otherwise overwrite from step 0; either way with a warning."""
    path = run_dir / CHECKPOINT
    if not (path.exists() or path.is_symlink()):
        aside.start_over(run_dir, "there is no checkpoint to resume them from")
        return None
    if path.is_symlink() or not path.is_file():
        why = "is a link, not a file of this folder" if path.is_symlink() else "is not a regular file"
    else:
        try:
            with warnings.catch_warnings():  # torch warns about a pickle protocol it may not read: we say why below
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
            why = checkpoint_format.problem(state, digest)
        except Exception as e:  # noqa: BLE001 - whatever a damaged or hostile file makes the reader raise
            why = checkpoint_format.unreadable(e)
    if why is not None:
        refuse(path, why)
        aside.start_over(run_dir, f"{CHECKPOINT} could not resume them")
        return None
    aside.keep_readable(run_dir, state["step"])
    return {**state, "path": path}


def refuse(path: Path, why: str, then: str = "starting from step 0") -> Path:
    """Set a checkpoint aside, and say why."""
    try:
        kept = aside.set_aside(path, "rejected")
    except OSError as e:
        raise CheckpointError(f"{path} {why}, and it could not be set aside ({e}): remove it, "
                              f"or move it away, to start from step 0") from e
    aside.warn(f"{path} {why}: set aside as {kept.name}; {then}")
    return kept


def restore(state: Mapping[str, Any], task: Any, opts: Mapping[str, Any]) -> None:
    """Put a freshly built task and its optimizers in the checkpoint's state, RNGs last (building
    the task drew from them). A checkpoint that does not fit them (code changed since it was
    saved) is set aside, and the run fails once: the next start begins at step 0."""
    try:
        for role, module in task.models().items():
            module.load_state_dict(state["models"][role])
        for role, o in opts.items():
            o.load_state_dict(state["optimizers"][role])
        if state["task"] is not None:
            task.load_state_dict(state["task"])
        rng.restore(state["rng"])
    except Exception as e:  # noqa: BLE001 - the state was read from a file: anything may not fit
        if "path" not in state:
            raise
        kept = refuse(state["path"], f"does not fit the models and optimizers this config builds "
                      f"({type(e).__name__}: {e})", then="the next start begins at step 0")
        raise CheckpointError(f"{state['path']} does not fit this config: set aside as {kept.name}; "
                              f"run again to start from step 0") from e


def remove(run_dir: Path) -> None:
    (run_dir / CHECKPOINT).unlink(missing_ok=True)


# ---- stop signals: runner/resume/stops.py (no torch there: the app installs them before importing torch) ----
from runner.resume.stops import Stopped, StopSignals  # importable from here as before


class Checkpointer:
    """The training loop's `after_step`: saves every `every` steps (0: never), and when one of
    `signals` arrived, saves and raises Stopped."""

    def __init__(self, run_dir: Path, digest: str, every: int, task: Any, opts: Mapping[str, Any],
                 tracker_id: str | None, signals: StopSignals):
        self.run_dir, self.digest, self.every, self.signals = run_dir, digest, every, signals
        self.task, self.opts, self.tracker_id = task, opts, tracker_id

    def __call__(self, step: int) -> None:
        at_step(step, self.every, self.task.total_steps, self.signals,
                lambda: save(self.run_dir, self.digest, step, self.task, self.opts, self.tracker_id))


def at_step(step: int, every: int, total: int, signals: StopSignals, save_now: Callable[[], None]) -> None:
    """At the end of `step`: `save_now()` every `every` steps (0: never) before the last, and when a
    stop signal arrived; then, after a signal, raise Stopped."""
    received = signals.received
    if received is not None or (every and step % every == 0 and step < total):
        save_now()
    if received is not None:
        raise Stopped(received, step)
