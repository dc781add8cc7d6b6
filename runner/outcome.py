"""How a run ends: `summary.json`, the checkpoint's removal, the tracker, the terminal, in that order.

The summary is written (atomically) before the checkpoint is removed, so the folder is finished
or resumable at every instant: a kill between the two leaves a finished run, which the next
start skips. A summary that cannot be written (a full or read-only disk) leaves the previous one
as it was and the checkpoint in place, and the run exits 1. Errors of the tracker or the
terminal change nothing in the folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from rich.console import Console

from runner import checkpoint, stops
from runner.convergence import fit_tail
from runner.disk import disk_problem
from runner.metrics import History, give_back, write_json_atomic
from runner.progress import for_output, job_line, records_after, summary_table, verdict_line

log = logging.getLogger(__name__)
console = for_output(Console())  # in a log file, lines are not hard-wrapped
FINISHED = ("completed", "diverged")


def stop_error(e: KeyboardInterrupt, run_dir: Path, step: int | None) -> str:
    """The summary's `error` for a run stopped by a signal: what stopped it, and what the next start does."""
    if not isinstance(e, stops.Stopped):
        text = "interrupted by the user (Ctrl-C)"
    elif e.step is not None:
        return str(e)  # in the loop: "stopped by SIGTERM at step N; checkpoint saved"
    else:
        text = str(e)
    if (run_dir / checkpoint.CHECKPOINT).exists():
        at = f" at step {step}" if step is not None else ""
        return f"{text}; the checkpoint{at} is kept: the next start resumes from it"
    return f"{text}; no checkpoint: the next start begins at step 0"


def finish(cfg: DictConfig, summary: dict[str, Any], history: History | None, tracker: Any, exit_code: int,
           wall: float, space: Path | None = None) -> int:
    """Write summary.json, remove a finished run's checkpoint, close the tracker with the exit code,
    show the summary table. Returns the exit code: 1 when the summary could not be written."""
    give_back(space)  # the disk space set aside for this moment
    history = history or History(cfg.metrics.primary or "", {})
    run_dir = Path(summary["run_dir"])
    if summary["status"] in ("failed", "interrupted"):
        summary["steps"] = history.last_step
    eps = torch.finfo({"bf16": torch.bfloat16, "fp64": torch.float64}.get(summary.get("precision"), torch.float32)).eps
    conv = summary.get("convergence") or {  # a task's own fit (task.convergence) replaces the runner's
        "conv/metric": history.primary,
        **fit_tail(history.series, cfg.metrics.fit_tail, cfg.metrics.thresholds, cfg.metrics.fit_floor, eps)}
    finished = summary["status"] in FINISHED
    summary.update(wall_time_s=wall, final=history.final, best=history.best, convergence=conv,
                   targets=history.reached, exit_code=exit_code,  # its next start resumes:
                   resumable=not finished and (run_dir / checkpoint.CHECKPOINT).exists())
    with stops.signals.protect():
        written = _write_summary(run_dir / "summary.json", summary)
    stops.pause_point("summary")
    if not written:
        exit_code = summary["exit_code"] = 1
    elif finished:
        checkpoint.remove(run_dir)  # only now: until its summary is on disk, the run resumes from it
    _close_tracker(tracker, summary, history, conv)
    _show(summary, history, run_dir)
    return exit_code


def _write_summary(path: Path, summary: dict[str, Any]) -> bool:
    try:
        write_json_atomic(path, summary)
        return True
    except OSError as e:
        kept = "the previous one is kept as it was" if path.exists() else "there is none"
        line = f"{disk_problem(e) or e.strerror or e} writing {path}: no summary of this run ({kept})"
        log.error(line)
        console.print(f"[red]{line}[/]", highlight=False, soft_wrap=True)
        return False


def _close_tracker(tracker: Any, summary: dict[str, Any], history: History, conv: dict[str, Any]) -> None:
    """Close the tracker; a signal that arrived meanwhile stops a sweep before its next job."""
    try:
        tracker.summarize({**{f"final/{k}": v for k, v in history.final.items()},
                           **{f"best/{k}": v for k, v in history.best.items()},
                           **{k: v for k, v in conv.items() if v is not None},
                           **{k: summary[k] for k in ("status", "error", "exit_code", "resumable", "steps")},
                           "optimizer_split": summary.get("optimizer_split", {})})
        stops.pause_point("tracker")
        tracker.finish(summary["exit_code"], summary["status"])
    except Exception as e:  # noqa: BLE001 - the run's own record is complete: say so, go on
        log.exception("closing the tracker failed")
        console.print(f"[red]the tracker failed as it closed[/] ({type(e).__name__}: {e}); the run's own "
                      f"record in {summary['run_dir']} is complete", highlight=False, soft_wrap=True)
    signals = stops.signals
    if signals.received is None and getattr(tracker, "stopped_by", None) is not None:
        signals.received = tracker.stopped_by  # its wait for wandb ended on a signal
    if signals.received is not None and summary["status"] in FINISHED:
        console.print(f"{stops.name(signals.received)} received as the run was finishing: it {summary['status']} "
                      f"and is kept so; nothing more is started", highlight=False, soft_wrap=True)


def _show(summary: dict[str, Any], history: History, run_dir: Path) -> None:
    try:
        after = records_after(run_dir / "metrics.jsonl", summary["steps"]) if history.last_step > summary["steps"] else 0
    except (OSError, ValueError):
        after = 0
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
