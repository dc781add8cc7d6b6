"""Runs that pick up where they stopped: skip a config that already finished, resume from a
checkpoint, stop cleanly on a signal.

- A run's identity is a digest of its resolved config (seed included; `rerun` and
  `checkpoint_every` and `logger` left out: they do not change the result), stored in `summary.json` and in
  the checkpoint. A job whose config finished (completed or diverged) in its sweep folder is
  skipped; failed and interrupted ones run again, from their checkpoint when they left one.
- Job numbers shift when a sweep's values change, so a job folder may hold the finished run of
  another config: it is moved aside to `<sweep>/.replaced/<digest>/` before the folder is reused,
  and a job finds its own finished run wherever it lies in the sweep folder and copies it home.
- `checkpoint.pt` holds models, optimizers with their schedulers, the task's own state, every RNG
  (python, numpy, torch, CUDA), the step and the wandb run id; saved every `checkpoint_every`
  steps and when a stop signal arrives, and removed once the run has finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from runner.metrics import write_json_atomic
from runner.sweep import SKIPPED

CHECKPOINT = "checkpoint.pt"
FINISHED = ("completed", "diverged")
NOT_IDENTITY = ("rerun", "checkpoint_every", "total_steps", "logger")  # keys that do not change what a run computes
KEEP_IN_PLACE = (".hydra", "runner.log", SKIPPED)  # they belong to the folder's current job


def config_digest(cfg: DictConfig) -> str:
    resolved = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in NOT_IDENTITY}
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _summary(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def _move_contents(src: Path, dst: Path, copy: bool) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        if entry.name in KEEP_IN_PLACE or entry.name == CHECKPOINT:
            continue
        target = dst / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        if copy:
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, target)
        else:
            os.replace(entry, target)


def claim_folder(run_dir: Path, sweep_dir: Path | None, digest: str) -> None:
    """Before a job uses its folder: a finished run of another config found there is moved aside."""
    old = _summary(run_dir)
    if sweep_dir is not None and old.get("status") in FINISHED and old.get("config_digest") not in (None, digest):
        _move_contents(run_dir, sweep_dir / ".replaced" / old["config_digest"], copy=False)


def find_finished(run_dir: Path, sweep_dir: Path | None, digest: str) -> Path | None:
    """The folder of a finished run of this config: this job's folder, or (in a sweep) any run
    folder under the sweep folder; a run found elsewhere is copied into this job's folder."""
    candidates = [run_dir]
    if sweep_dir is not None:
        candidates += sorted(p.parent for p in sweep_dir.glob("**/summary.json") if p.parent != run_dir)
    for folder in candidates:
        s = _summary(folder)
        if s.get("status") in FINISHED and s.get("config_digest") == digest:
            if folder != run_dir:
                is_job = (folder / ".hydra").exists()  # another job's folder keeps its run; .replaced/ gives it up
                _move_contents(folder, run_dir, copy=is_job)
                if not is_job:
                    shutil.rmtree(folder)
                finished_at = (run_dir / "summary.json").stat().st_mtime
                write_json_atomic(run_dir / "summary.json", {**s, "run_dir": str(run_dir)})
                os.utime(run_dir / "summary.json", (finished_at, finished_at))  # still the time it finished
            return folder
    return None


# ---- checkpoints ------------------------------------------------------------------------------
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
