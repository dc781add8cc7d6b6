"""One run, start to finish: validate, build, train, and always leave a complete run folder.

Whatever the ending (completed, diverged, failed, interrupted), `summary.json` is written, the
tracker is finished with the real exit code, and the terminal shows a summary table.
"""

from __future__ import annotations

import logging
import math
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
from rich.console import Console

from runner import build, checkpoint, identity, provenance
from runner.convergence import fit_tail
from runner.device import Runtime, parallel_jobs, set_threads
from runner.loop import assess, train
from runner.metrics import History, MetricsFile, write_json_atomic
from runner.progress import Reporter, bar_title, for_output, job_line, records_after, summary_table, verdict_line
from runner.tracker import NullTracker
from runner.validate import ConfigError, validate

log = logging.getLogger(__name__)
console = for_output(Console())  # in a log file, lines are not hard-wrapped


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


class Recorder:
    """Fans each record out to metrics.jsonl, the summary's history, the tracker and the terminal."""

    def __init__(self, cfg: DictConfig, run_dir: Path, primary: str, total: int, tracker: Any, name: str,
                 resume_step: int | None = None):
        self.history = History(primary, cfg.metrics.targets)
        self.file = MetricsFile(run_dir / "metrics.jsonl", keep_until=resume_step)
        for record in self.file.kept:  # a resumed run: its summary covers the steps before the stop
            self.history.add(record)
        self.tracker, self.factor = tracker, cfg.metrics.diverge_factor
        self.reporter = Reporter(console, total, bar_title(name, cfg.seed), primary,  # a sweep keeps one line per job
                                 transient=HydraConfig.get().mode == RunMode.MULTIRUN)

    def clocks(self) -> tuple[float, float]:
        """(training time, wall time) of the last record kept from before a resume."""
        last = self.file.kept[-1] if self.file.kept else {}
        return last.get("time/elapsed_s", 0.0), last.get("time_s", 0.0)

    def emit(self, record: dict[str, float]) -> str | None:
        self.file.write(record)
        self.history.add(record)
        self.tracker.log(record)
        self.reporter.update(record)
        return diverged(record, self.history, self.factor)

    def close(self) -> None:
        self.reporter.close()
        self.file.close()


def run(cfg: DictConfig) -> int:
    """Run one experiment in Hydra's output folder; return the process exit code."""
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    sweep_dir = Path(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None
    summary: dict[str, Any] = {"status": "failed", "error": None, "steps": 0, "wall_time_s": 0.0,
                               "device": str(cfg.device), "run_dir": str(run_dir), "config_digest": None}
    tracker, rec, exit_code, stop, skipped = NullTracker(), None, 1, checkpoint.StopSignals(), False
    t0 = time.perf_counter()
    try:  # from the first line: whatever goes wrong leaves a summary, and a sweep goes on
        resolved = identity.resolved_config(cfg)
        digest = summary["config_digest"] = identity.config_digest(resolved)
        done = identity.prepare_folder(run_dir, sweep_dir, digest, cfg.rerun)
        if done is not None:
            skipped = True
            console.print(f"skipped: this config already finished in {done} (rerun=true runs it again)",
                          highlight=False)
            return 0
        state = None if cfg.rerun else checkpoint.load(run_dir, digest)
        (run_dir / "summary.json").unlink(missing_ok=True)  # it describes an earlier attempt
        validate(cfg, hc.runtime.choices)
        rt = Runtime.from_config(cfg.device, cfg.precision, cfg.compile, job_num=hc.job.num if sweep_dir else None)
        summary["device"], summary["precision"] = str(rt.device), "bf16" if rt.dtype == torch.bfloat16 else "fp32"
        summary["threads"] = set_threads(cfg.threads, rt.device.type, parallel_jobs(hc))
        summary["provenance"] = provenance.record(hc.overrides.task, cfg.seed, rt.device, summary["threads"])
        name, tags, group = describe(hc)  # the tracker's run exists before the task: a failed build shows in it
        tracker = build.tracker(cfg, {**resolved, "provenance": summary["provenance"]}, run_dir, name, tags, group,
                                run_id=state and state["wandb_id"])
        summary["wandb_id"] = tracker.id
        seed_everything(cfg.seed)
        task = build.task(cfg, rt)
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
        with stop:
            steps, reason = train(task, opts, rt, rec.emit, log_every=cfg.log_every, eval_every=cfg.eval_every,
                                  sharpness_every=cfg.metrics.sharpness_every,
                                  sharpness_iters=cfg.metrics.sharpness_iters, start=start, clocks=clocks,
                                  after_step=saver)
        if reason is None and callable(getattr(task, "assess", None)):
            reason = assess(task, rec.emit, t0)
        if callable(getattr(task, "convergence", None)):
            summary["convergence"] = task.convergence(rec.history.primary, cfg.metrics.fit_tail)
        summary.update(steps=steps, status="diverged" if reason else "completed", error=reason)
        checkpoint.remove(run_dir)  # finished: nothing to resume
        if callable(getattr(task, "figures", None)):
            summary["figures"] = {key: str(path) for key, path in task.figures(run_dir).items()}
            for key, path in summary["figures"].items():
                tracker.image(key, Path(path))
        exit_code = 0
    except ConfigError as e:
        summary.update(error=str(e), problems=e.problems)
    except KeyboardInterrupt as e:
        summary.update(status="interrupted", error=str(e) if isinstance(e, checkpoint.Stopped)
                       else "interrupted by the user (Ctrl-C)")
        exit_code, interrupt = getattr(e, "exit_code", 130), e
    except Exception as e:  # noqa: BLE001 - a failed run is recorded and reported, not re-raised
        log.exception("run failed")
        first_line = str(e).splitlines()[0] if str(e) else ""
        summary.update(status="failed",  # also when it raised after training (figures, assessment)
                       error=f"{type(e).__name__}: {first_line} (traceback in {run_dir / 'runner.log'})")
    finally:
        if rec is not None:
            rec.close()
        if not skipped:  # a skipped job's folder keeps the finished run's summary
            finish(cfg, summary, rec.history if rec else None, tracker, exit_code, time.perf_counter() - t0)
    if summary["status"] == "interrupted":
        stop.pass_on()  # under submitit on SIGUSR2: requeue this job (it resumes from the checkpoint)
        raise interrupt  # a Ctrl-C stops a sweep too, after this run's folder is complete
    return exit_code


def finish(cfg: DictConfig, summary: dict[str, Any], history: History | None, tracker: Any,
           exit_code: int, wall: float) -> None:
    """Write summary.json, close the tracker with the exit code, show the summary table."""
    history = history or History(cfg.metrics.primary or "", {})
    if summary["status"] in ("failed", "interrupted"):
        summary["steps"] = history.last_step
    eps = torch.finfo(torch.bfloat16 if summary.get("precision") == "bf16" else torch.float32).eps
    conv = summary.get("convergence") or {  # a task's own fit (task.convergence) replaces the runner's
        "conv/metric": history.primary,
        **fit_tail(history.series, cfg.metrics.fit_tail, cfg.metrics.thresholds, cfg.metrics.fit_floor, eps)}
    summary.update(wall_time_s=wall, final=history.final, best=history.best, convergence=conv,
                   targets=history.reached, exit_code=exit_code,
                   resumable=(Path(summary["run_dir"]) / checkpoint.CHECKPOINT).exists())  # its next start resumes
    write_json_atomic(Path(summary["run_dir"]) / "summary.json", summary)
    tracker.summarize({**{f"final/{k}": v for k, v in history.final.items()},
                       **{f"best/{k}": v for k, v in history.best.items()},
                       **{k: v for k, v in conv.items() if v is not None},
                       **{k: summary[k] for k in ("status", "error", "exit_code", "resumable", "steps")},
                       "optimizer_split": summary.get("optimizer_split", {})})
    tracker.finish(exit_code, summary["status"])
    run_dir = Path(summary["run_dir"])
    after = records_after(run_dir / "metrics.jsonl", summary["steps"]) if history.last_step > summary["steps"] else 0
    if summary.get("problems"):
        console.print("[red]invalid config[/] (nothing was run):\n" + "\n".join(f"  - {p}" for p in summary["problems"]),
                      highlight=False, soft_wrap=True)
    elif HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:  # the sweep's table comes last
        console.print(job_line(summary, after), highlight=False, soft_wrap=True)
        return
    elif history.final:
        console.print(summary_table(summary, run_dir, after))
        if (line := verdict_line(summary)) is not None:
            console.print(line, highlight=False)
    else:
        console.print(f"[red]{summary['status']}[/] before the first logged step: {summary['error']}", highlight=False)
    console.print(f"run folder: {summary['run_dir']}", highlight=False, soft_wrap=True)


def diverged(record: dict[str, float], history: History, factor: float) -> str | None:
    """Why the run counts as diverged at this record (NaN/Inf, or the primary metric blew up)."""
    bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        return f"diverged at step {record['step']}: {', '.join(bad)} not finite"
    first, value = history.first_value(), record.get(history.primary)
    if first is not None and first > 0 and value is not None and value > factor * first:
        return (f"diverged at step {record['step']}: {history.primary}={value:.3g} "
                f"> {factor:g} x its first value {first:.3g}")
    return None
