"""One lane of a group: its job's start and end through the run's own machinery (runner/run/), so
that its folder holds what a single run's holds: the lock while it runs, skip-finished, provenance,
the tracker's run, metrics.jsonl through the Recorder, summary.json through runner.run.outcome.

Each call runs with the job's own HydraConfig set (the launcher's `enter`). A lane's start is a
single run's start up to its first step, its end a single run's end from its last step; the steps
in between are the group's (runner/lanes/loop.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from runner.resume import aside, checkpoint, lock, rng
from runner.run import build, disk, identity, outcome, provenance
from runner.run.job import describe, seed_everything, set_aside_finished_summary
from runner.run.metrics import reserve
from runner.run.outcome import console
from runner.run.recorder import Recorder
from runner.task.device import Runtime, parallel_jobs, set_threads
from runner.tracking.tracker import NullTracker
from runner.validation.validate import ConfigError, validate


class Quiet:
    """A lane's progress: none of its own (the group shows one line per lane as it ends)."""

    def update(self, record: Any) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to close."""


@dataclass
class Lane:
    cfg: DictConfig
    run_dir: Path
    held: Any
    summary: dict[str, Any]
    t0: float = field(default_factory=time.perf_counter)
    tracker: Any = field(default_factory=NullTracker)
    rec: Recorder | None = None
    space: Path | None = None
    task: Any = None
    rt: Runtime | None = None
    state: dict[str, Any] | None = None  # the checkpoint it resumes from (runner/lanes/checkpoints.py)
    start_step: int = 0
    rngs: dict[str, Any] | None = None  # the global RNGs as its single run holds them while training
    clocks: tuple[float, float] = (0.0, 0.0)  # training and wall time of its records before a resume


def start(cfg: DictConfig, resolved: dict | None = None) -> Lane | int | None:
    """A lane ready for its first step (or, resumed from its checkpoint, the step after it); or the
    job's exit code when it ended here (skipped, its folder busy, its start failed). `resolved`:
    `cfg` resolved in this job's context, when the launcher has it already."""
    hc = HydraConfig.get()
    run_dir, sweep_dir = Path(hc.runtime.output_dir), Path(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None
    try:
        held = lock.acquire(run_dir)
    except (lock.FolderBusy, OSError) as e:
        console.print(f"[red]not run[/]: {e}", highlight=False, soft_wrap=True)
        return 1
    lane = Lane(cfg, run_dir, held, {"status": "failed", "error": None, "steps": 0, "wall_time_s": 0.0,
                                     "device": str(cfg.device), "run_dir": str(run_dir), "config_digest": None})
    try:
        if held.note:
            aside.warn(held.note)
        resolved = resolved if resolved is not None else identity.resolved_config(cfg)
        digest = lane.summary["config_digest"] = identity.config_digest(resolved)
        done = identity.prepare_folder(run_dir, sweep_dir, digest, cfg.rerun)
        if done is not None:
            if done == run_dir:
                checkpoint.remove(run_dir)
            console.print(f"skipped: this config already finished in {done} (rerun=true runs it again)",
                          highlight=False)
            return release(lane, 0)
        state = lane.state = None if cfg.rerun else checkpoint.load(run_dir, digest)
        set_aside_finished_summary(run_dir)
        lane.space = reserve(run_dir)
        validate(cfg, hc.runtime.choices, overrides=hc.overrides.task if sweep_dir else None)
        rt = lane.rt = Runtime.from_config(cfg.device, cfg.precision, cfg.compile,
                                           job_num=hc.job.num if sweep_dir else None)
        s = lane.summary
        s["device"], s["precision"] = str(rt.device), rt.precision
        s["threads"] = set_threads(cfg.threads, rt.device.type, parallel_jobs(hc))
        s["provenance"] = provenance.record(hc.overrides.task, cfg.seed, rt.device, s["threads"])
        name, tags, group = describe(hc)
        lane.tracker = build.tracker(cfg, {**resolved, "provenance": s["provenance"]}, run_dir, name, tags, group,
                                     run_id=state and state["wandb_id"], alongside=True)
        s["wandb_id"] = lane.tracker.id
        seed_everything(cfg.seed)
        lane.task = build.task(cfg, rt)
        if state is not None:  # its models and task state; the optimizers' when the group is built
            checkpoint.restore(state, lane.task, {})
            lane.start_step = s["resumed_from"] = state["step"]
            console.print(f"resuming from the checkpoint at step {lane.start_step}", highlight=False)
        lane.rngs = rng.state()
        s["precision"] = getattr(lane.task, "computes_in", s["precision"])
        if getattr(lane.task, "constants", None):
            s["constants"] = dict(lane.task.constants)
        s["optimizer_split"] = {role: {"all": [len(list(m.parameters())), sum(p.numel() for p in m.parameters())]}
                                for role, m in lane.task.models().items()}  # lanes take no `aux` optimizer
        with open_dict(cfg):
            cfg.total_steps = lane.task.total_steps
        if not isinstance(lane.tracker, NullTracker):  # logger=none: nothing to update
            lane.tracker.update_config(identity.resolved_config(cfg))
        lane.rec = Recorder(cfg, run_dir, cfg.metrics.primary or lane.task.primary, lane.task.total_steps,
                            lane.tracker, name, resume_step=lane.start_step if state else None)
        lane.rec.reporter = Quiet()
        lane.clocks = lane.rec.clocks()
        lane.t0 -= lane.clocks[1]
        return lane
    except ConfigError as e:
        lane.summary.update(error=str(e), problems=e.problems)
        return end(lane, 1)
    except Exception as e:  # noqa: BLE001 - a lane that cannot start fails alone, as a single run would
        fail(lane, e)
        return end(lane, 1)


def fail(lane: Lane, e: Exception) -> None:
    disk.failed(e, lane.summary, lane.rec, lane.run_dir, lane.space)
    lane.space = None


def end(lane: Lane, exit_code: int, steps: int | None = None, reason: str | None = None) -> int:
    """A single run's end: convergence and figures (a lane that trained: `steps` given), then
    metrics.jsonl closed, summary.json written, tracker closed, the job's line shown, lock released."""
    s, task = lane.summary, lane.task
    try:
        if steps is not None:
            if callable(getattr(task, "convergence", None)):
                s["convergence"] = task.convergence(lane.rec.history.primary, lane.cfg.metrics.fit_tail)
            if callable(getattr(task, "figures", None)):
                s["figures"] = {key: str(path) for key, path in task.figures(lane.run_dir).items()}
                for key, path in s["figures"].items():
                    lane.tracker.image(key, Path(path))
            s.update(steps=steps, status="diverged" if reason else "completed", error=reason)
            exit_code = 0
    except Exception as e:  # noqa: BLE001 - figures that fail make a failed run, as in a single run
        fail(lane, e)
        exit_code = 1
    if lane.rec is not None:
        lane.rec.close()
    code = outcome.finish(lane.cfg, s, lane.rec.history if lane.rec else None, lane.tracker, exit_code,
                          time.perf_counter() - lane.t0, lane.space)
    return release(lane, code)


def interrupted(lane: Lane, e: KeyboardInterrupt, step: int | None = None) -> int:
    """End a lane stopped by `e`; `step`: where its kept checkpoint stands (a lane that had not trained)."""
    lane.summary.update(status="interrupted", error=outcome.stop_error(e, lane.run_dir, step))
    return end(lane, getattr(e, "exit_code", 130))


def release(lane: Lane, code: int | None) -> int | None:
    if (put_back := lane.held.release()) is not None:
        aside.warn(put_back)
    return code

