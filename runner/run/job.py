"""One run, start to finish: validate, build, train, and always leave a complete run folder.

Whatever the ending (completed, diverged, failed, interrupted), `summary.json` is written, the
tracker is finished with the real exit code, and the terminal shows a summary table
(runner/run/outcome.py). The folder is finished or resumable at every instant, a kill -9 included:

- it is locked first (runner/resume/lock.py): a second process stops before touching anything;
- a previous attempt's summary stays until this one's replaces it;
- a task with measurements after training (`assess()`), or a run with `checkpoint_every`, saves
  a checkpoint at its last step: a stop during those measurements resumes there;
- the summary is written before the checkpoint is removed.

Stop signals act at every stage (runner/resume/stops.py): the run ends `interrupted` (exit 130, 143 or
140) with its summary, from a checkpoint where one could be saved. A full or read-only disk ends
it with a message naming the file, the step and the records kept, and exit code 1.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from runner.common.schema import FINISHED
from runner.resume import aside, checkpoint, lock, stops
from runner.run import build, disk, identity, outcome, provenance
from runner.run.loop import assess, train
from runner.run.metrics import reserve
from runner.run.outcome import console
from runner.run.recorder import Recorder
from runner.task.device import Runtime, parallel_jobs, set_threads
from runner.tracking.tracker import NullTracker
from runner.validation.validate import ConfigError, validate

log = logging.getLogger(__name__)
STARTING = "during start-up"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def describe(hc: Any) -> tuple[str, list[str], str | None]:
    """wandb name (the overrides, seed and rerun left out), tags (task, optim, model) and sweep
    group: the sweep folder's name, with its date for Hydra's default `multirun/<date>/<time>`."""
    overrides = [o for o in hc.overrides.task if not o.startswith(("seed=", "rerun="))]
    tags = [hc.runtime.choices.get(g) for g in ("task", "optim", "model")]
    group = None
    if hc.mode == RunMode.MULTIRUN:
        folder = Path(hc.sweep.dir)
        group = f"{folder.parent.name}_{folder.name}" if re.fullmatch(r"[\d-]+", folder.name) else folder.name
    return " ".join(overrides) or "default", [t for t in tags if t], group


def run(cfg: DictConfig) -> int:
    """Run one experiment in Hydra's output folder; return the process exit code."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    stop = stops.arm()  # the `runner` app armed them before importing torch: a no-op then
    try:
        held = lock.acquire(run_dir)
    except lock.FolderBusy as e:  # the folder is another process's: not a byte written in it
        console.print(f"[red]not run[/]: {e}", highlight=False, soft_wrap=True)
        return 1
    except OSError as e:
        console.print(f"[red]not run[/]: {disk.disk_problem(e) or e.strerror} taking {run_dir / lock.LOCK}",
                      highlight=False, soft_wrap=True)
        return 1
    try:
        if held.note:
            aside.warn(held.note)
        return _run(cfg, run_dir, stop)
    finally:
        if (put_back := held.release()) is not None:
            aside.warn(put_back)


def _run(cfg: DictConfig, run_dir: Path, stop: stops.StopSignals) -> int:
    hc = HydraConfig.get()
    sweep_dir = Path(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None
    summary: dict[str, Any] = {"status": "failed", "error": None, "steps": 0, "wall_time_s": 0.0,
                               "device": str(cfg.device), "run_dir": str(run_dir), "config_digest": None}
    tracker, rec, exit_code, interrupt, state, space, at_end = NullTracker(), None, 1, None, None, None, None
    skipped = False
    t0 = time.perf_counter()
    try:  # from the first line: whatever goes wrong leaves a summary, and a sweep goes on
        resolved = identity.resolved_config(cfg)
        digest = summary["config_digest"] = identity.config_digest(resolved)
        done = identity.prepare_folder(run_dir, sweep_dir, digest, cfg.rerun)
        if done is not None:
            skipped = True
            if done == run_dir:
                checkpoint.remove(run_dir)  # left by a kill between the summary and its removal
            console.print(f"skipped: this config already finished in {done} (rerun=true runs it again)",
                          highlight=False)
            return 0
        stop.check("before the run started")  # a signal during the imports, or between two jobs of a sweep
        state = None if cfg.rerun else checkpoint.load(run_dir, digest)
        set_aside_finished_summary(run_dir)
        space = reserve(run_dir)
        validate(cfg, hc.runtime.choices, overrides=hc.overrides.task if sweep_dir else None)
        rt = Runtime.from_config(cfg.device, cfg.precision, cfg.compile, job_num=hc.job.num if sweep_dir else None)
        summary["device"], summary["precision"] = str(rt.device), rt.precision
        summary["threads"] = set_threads(cfg.threads, rt.device.type, parallel_jobs(hc))
        summary["provenance"] = provenance.record(hc.overrides.task, cfg.seed, rt.device, summary["threads"])
        name, tags, group = describe(hc)  # the tracker's run exists before the task: a failed build shows in it
        stops.pause_point("startup")
        tracker = build.tracker(cfg, {**resolved, "provenance": summary["provenance"]}, run_dir, name, tags, group,
                                run_id=state and state["wandb_id"])
        summary["wandb_id"] = tracker.id
        seed_everything(cfg.seed)
        with stop.interruptible(STARTING):  # loading (or downloading) data may take long
            stops.pause_point("build")
            task = build.task(cfg, rt)
        summary["precision"] = getattr(task, "computes_in", summary["precision"])  # a task computing in fp64 says so
        if getattr(task, "constants", None):  # what a claim may predict from (an objective's mu, L, kappa)
            summary["constants"] = dict(task.constants)
        with open_dict(cfg):
            cfg.total_steps = task.total_steps
        tracker.update_config(identity.resolved_config(cfg))  # total_steps and the schedule reading it
        opts = build.optimizers(cfg, task)
        summary["optimizer_split"] = {role: o.split for role, o in opts.items()}
        for role, o in opts.items():
            line = f"optimizer for {role}: {o.describe()}"
            console.print(line, highlight=False)
            log.info(line)
        start = 0
        if state is not None:
            checkpoint.restore(state, task, opts)
            start = summary["resumed_from"] = state["step"]
            console.print(f"resuming from the checkpoint at step {start}", highlight=False)
        rec = Recorder(cfg, run_dir, cfg.metrics.primary or task.primary, task.total_steps, tracker, name,
                       resume_step=start if state else None)
        clocks = rec.clocks()
        t0 -= clocks[1]
        saver = checkpoint.Checkpointer(run_dir, digest, cfg.checkpoint_every, task, opts, tracker.id, stop)
        stop.check(STARTING)
        steps, reason = train(task, opts, rt, rec.emit, log_every=cfg.log_every, eval_every=cfg.eval_every,
                              sharpness_every=cfg.metrics.sharpness_every,
                              sharpness_iters=cfg.metrics.sharpness_iters,
                              sharpness_lanczos=cfg.metrics.sharpness_lanczos, start=start, clocks=clocks,
                              after_step=saver)
        measures = reason is None and callable(getattr(task, "assess", None))
        if (measures or cfg.checkpoint_every) and reason is None and steps > start:
            checkpoint.save(run_dir, digest, steps, task, opts, tracker.id)  # a stop from here on resumes here
            at_end = steps
        stops.pause_point("trained")
        if measures:
            reason = assess(task, rec.emit, t0, stop)
        if callable(getattr(task, "convergence", None)):
            summary["convergence"] = task.convergence(rec.history.primary, cfg.metrics.fit_tail)
        stops.pause_point("figures")
        if callable(getattr(task, "figures", None)):
            summary["figures"] = {key: str(path) for key, path in task.figures(run_dir).items()}
            for key, path in summary["figures"].items():
                tracker.image(key, Path(path))
        summary.update(steps=steps, status="diverged" if reason else "completed", error=reason)
        exit_code = 0
    except ConfigError as e:
        summary.update(error=str(e), problems=e.problems)
    except KeyboardInterrupt as e:
        step = at_end if at_end is not None else state["step"] if state else None
        summary.update(status="interrupted", error=outcome.stop_error(e, run_dir, step))
        exit_code, interrupt = getattr(e, "exit_code", 130), e
    except Exception as e:  # noqa: BLE001 - a failed run is recorded and reported, not re-raised
        disk.failed(e, summary, rec, run_dir, space)
        space = None
    finally:
        try:
            if rec is not None:
                rec.close()
        except Exception as e:  # noqa: BLE001 - the summary comes all the same
            aside.warn(f"closing {run_dir / 'metrics.jsonl'}: {e}; its lines written before are whole, "
                       f"a file system that reports errors only then (NFS) may have lost some")
        if not skipped:  # a skipped job's folder keeps the finished run's summary
            exit_code = outcome.finish(cfg, summary, rec.history if rec else None, tracker, exit_code,
                                       time.perf_counter() - t0, space)
    if interrupt is not None:
        stop.pass_on(getattr(interrupt, "signum", 2))  # under submitit on SIGUSR2: requeue this job
        raise interrupt  # a Ctrl-C stops a sweep too, after this run's folder is complete
    return exit_code


def set_aside_finished_summary(run_dir: Path) -> None:
    """A finished run's summary in a folder that runs again (rerun=true, or another config's run):
    set aside, so a kill of this run never leaves it saying finished beside this run's records.
    Any other (failed, interrupted) stays until this run's summary replaces it."""
    path = run_dir / "summary.json"
    try:
        finished = json.loads(path.read_text()).get("status") in FINISHED
    except (OSError, ValueError, AttributeError):
        return
    if finished:
        kept = aside.set_aside(path, "replaced")
        aside.warn(f"{path} describes a finished run of this folder, which runs again: set aside as {kept.name}")
