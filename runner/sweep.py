"""The end of a sweep: one table of every job, the sweep folder, and the command's exit status.

A Hydra callback (`hydra.callbacks.sweep_summary` in conf/config.yaml) runs in the launching
process once all jobs have returned, whichever launcher ran them (in this process, joblib
workers, SLURM or submitit's local executor): it reads each job folder's `summary.json`, so it
needs nothing back from the jobs themselves. The command exits non-zero iff a job of this sweep
failed, was interrupted or left no summary; a diverged job is a result.

Also here: the value a hyperparameter sweeper (Optuna) optimises, read from a job's summary.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

# Set by SweepSummary at the end of a multirun; runner.__main__ exits with it.
exit_code: int | None = None
# The multirun in progress in this process (its config), for the table after a Ctrl-C.
active: tuple[SweepSummary, DictConfig] | None = None
FINISHED = ("completed", "diverged")  # a result: the job needs no re-run
SKIPPED = ".skipped"  # in a job folder: the job was skipped, its config had finished before
KEY_METRICS = ("eval/acc", "eval/loss", "train/loss")  # shown beside the primary metric when present


class SweepSummary(Callback):
    def __init__(self, show: bool = True):
        self.show, self.started = show, time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global active
        self.started = time.time() - 1.0  # file times are coarse on some file systems
        active = (self, config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global exit_code
        sweep_dir = Path(str(config.hydra.sweep.dir))
        rows = job_rows(sweep_dir, self.started)
        bad = [r for r in rows if r["this_sweep"] and r["status"] not in FINISHED]
        exit_code = 1 if bad else 0
        if self.show:
            from rich.console import Console

            console = Console()
            if not console.is_terminal:  # logs (CI, SLURM) have no width limit: do not squeeze the table
                console = Console(width=160)
            console.print(sweep_table(rows, sweep_dir))
            if bad:
                console.print(f"[red]{len(bad)} of {len(rows)} jobs did not finish[/]: "
                              + ", ".join(f"{r['job']} ({r['status']})" for r in bad), highlight=False)
            console.print(f"sweep folder: {sweep_dir}", highlight=False, soft_wrap=True)


def job_rows(sweep_dir: Path, since: float = 0.0) -> list[dict[str, Any]]:
    """One row per job folder (a folder with Hydra's `.hydra/` record), in job-number order.
    `this_sweep`: Hydra started the job after `since` (folders of earlier sweeps into the same
    folder are shown, but decide nothing); `skipped`: its config had finished before."""
    rows = []
    for record in sorted(sweep_dir.glob("**/.hydra/overrides.yaml"), key=lambda p: _job_key(p.parent.parent, sweep_dir)):
        job = record.parent.parent
        summary_file = job / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
        touched = max(record.stat().st_mtime, summary_file.stat().st_mtime if summary else 0.0)
        rows.append({"job": str(job.relative_to(sweep_dir)), "overrides": _overrides(record),
                     "status": summary.get("status", "no summary"), "summary": summary,
                     "this_sweep": touched >= since, "skipped": (job / SKIPPED).exists()})
    return rows


def _job_key(job: Path, root: Path) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in job.relative_to(root).parts)


def _overrides(record: Path) -> list[str]:
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.load(record)]


def sweep_table(rows: list[dict[str, Any]], sweep_dir: Path):
    """A rich table: job, overrides, status, the primary metric's and key metrics' final values, time."""
    from rich.table import Table

    primaries = {r["summary"].get("convergence", {}).get("conv/metric") for r in rows} - {None, ""}
    one_primary = primaries.pop() if len(primaries) == 1 else None
    extra = [k for k in KEY_METRICS if k != one_primary and any(k in r["summary"].get("final", {}) for r in rows)]
    split = [r["overrides"] for r in rows]
    common = [o for o in split[0] if all(o in other for other in split)] if len(rows) > 1 else []
    table = Table(title=f"sweep: {len(rows)} jobs in {sweep_dir}", header_style="bold",
                  caption=f"every job: {' '.join(common)}" if common else None)
    for name, justify in (("job", "right"), ("overrides", "left"), ("status", "left"),
                          (one_primary or "primary", "right"), *((k, "right") for k in extra),
                          ("steps", "right"), ("time", "right")):
        table.add_column(name, justify=justify, overflow="fold", no_wrap=name not in ("overrides", "status"))
    for r in rows:
        s, colour = r["summary"], {"completed": "green", "diverged": "yellow"}.get(r["status"], "red")
        final = s.get("final", {})
        metric = s.get("convergence", {}).get("conv/metric")
        primary = _fmt(final.get(metric)) if one_primary else f"{metric}={_fmt(final.get(metric))}" if metric else "-"
        status = f"[{colour}]{r['status']}[/]" + (" (earlier)" if r["skipped"] else "")
        if r["status"] not in FINISHED and s.get("error"):
            status += f"\n[dim]{s['error'][:120]}[/]"
        table.add_row(r["job"], " ".join(o for o in r["overrides"] if o not in common) or "(defaults)", status, primary, *(_fmt(final.get(k)) for k in extra),
                      str(s.get("steps", "-")), f"{s['wall_time_s']:.1f} s" if "wall_time_s" in s else "-")
    return table


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def objective(run_dir: Path, metric: str | None, use: str, minimize: bool) -> float:
    """The value a sweeper optimises: the `use` ("final" or "best") value of `metric` (None: the
    task's primary metric). A run that failed, diverged or never reported it gets the worst value
    for the direction (+inf when minimising), so a study records it and carries on."""
    worst = math.inf if minimize else -math.inf
    path = run_dir / "summary.json"
    if not path.exists():
        return worst
    summary = json.loads(path.read_text())
    metric = metric or summary.get("convergence", {}).get("conv/metric")
    value = summary.get(use, {}).get(metric)
    if summary.get("status") != "completed" or value is None or not math.isfinite(value):
        return worst
    return float(value)
