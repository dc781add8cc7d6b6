"""The end of a sweep: one table of every job, the sweep folder, and the command's exit status.

A Hydra callback (`hydra.callbacks.sweep_summary` in conf/config.yaml) runs in the launching
process once all jobs have returned, whichever launcher ran them (in this process, joblib
workers, SLURM or submitit's local executor): it reads each job folder's `summary.json`, so it
needs nothing back from the jobs themselves. The command exits non-zero iff a job of this sweep
failed, was interrupted or left no summary; a diverged job is a result.

While the jobs run it shows the sweep's progress: job k of N, how many completed, diverged and
failed so far, and an ETA. Jobs in this process report through Hydra's job hooks, one line as
each starts; jobs in other processes (joblib, SLURM) are watched from a thread that reads their
folders every second and prints a line when the counts change. N comes from the sweeper
(`expect`, the covering sweeper's batch; Optuna's `n_trials`); without it the line says so.

Also here: the value a hyperparameter sweeper (Optuna) optimises, read from a job's summary.
Job folders are read as untrusted input (runner.common.runfiles): a summary.json that cannot be used
makes its job `unreadable: <why>` in the table, and the sweep exits 1, as for a job that failed.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from runner.common.runfiles import Unreadable, read_json, read_yaml
from runner.common.schema import FINISHED, SKIPPED, check_summary, is_number

if TYPE_CHECKING:
    from rich.console import Console

# Set by SweepSummary at the end of a multirun; runner.__main__ exits with it.
exit_code: int | None = None
# The multirun in progress in this process (its config), for the table after a Ctrl-C.
active: tuple[SweepSummary, DictConfig] | None = None
KEY_METRICS = ("eval/acc", "eval/loss", "train/loss")  # shown beside the primary metric when present
# The columns that wrap when the table is wider than the terminal, and the width each keeps (at 80
# columns a verdict takes two lines before the overrides shrink to a letter a line); an error
# in the status wraps before the overrides do (its max_width).
WRAPPED = {"overrides": 16, "status": 9, "verdict": 11}


class SweepSummary(Callback):
    def __init__(self, show: bool = True, every_s: float = 1.0):
        self.show, self.every_s, self.started, self.t0 = show, every_s, time.time(), time.monotonic()
        self.total: int | None = None  # jobs in the sweep, when the sweeper says
        self.pid: int | None = None  # the launching process (jobs elsewhere run on pickled copies)
        self.jobs, self.done = 0, Counter()  # jobs started and ended in this process, by status
        self.watcher: tuple[threading.Thread, threading.Event] | None = None

    def __getstate__(self) -> dict[str, Any]:  # launchers pickle the callbacks into their workers
        return {**self.__dict__, "watcher": None}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        global active
        if active is not None:  # an earlier multirun in this process that stopped before its end
            active[0].stop_watching()
        self.started, self.t0 = time.time() - 1.0, time.monotonic()  # file times are coarse on some file systems
        self.total, self.pid, self.jobs, self.done = config.hydra.sweeper.get("n_trials"), os.getpid(), 0, Counter()
        active = (self, config)
        if self.show and not str(config.hydra.launcher.get("_target_")).endswith(".BasicLauncher"):
            stop = threading.Event()
            thread = threading.Thread(target=self.watch, args=(Path(str(config.hydra.sweep.dir)), stop), daemon=True)
            self.watcher = (thread, stop)
            thread.start()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if os.getpid() != self.pid:  # a single run, or a job in a worker process (the watcher counts it)
            return
        self.jobs += 1
        if self.show:
            _console().print(progress_line(self.done, self.total, time.monotonic() - self.t0, job=self.jobs),
                             highlight=False, soft_wrap=True)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        job_return.cfg = job_return.hydra_cfg = None  # Hydra's launcher keeps every job's return to the sweep's end: not its 2 config copies (~130 KB)
        if os.getpid() == self.pid:
            self.done[job_status(Path(config.hydra.runtime.output_dir), self.started) or "no summary"] += 1

    def watch(self, sweep_dir: Path, stop: threading.Event) -> None:
        """Until the multirun ends: every `every_s`, count the job folders' statuses; print them when they change."""
        cache: dict[Path, tuple[float, str]] = {}
        shown = None
        while not stop.wait(self.every_s) and not self.jobs:  # jobs in this process report themselves
            done, running = scan(sweep_dir, self.started, cache)
            if done and done != shown:
                shown = done
                _console().print(progress_line(done, self.total, time.monotonic() - self.t0, running=running),
                                 highlight=False, soft_wrap=True)

    def stop_watching(self) -> None:
        if self.watcher is not None:
            thread, stop = self.watcher
            stop.set()
            thread.join(timeout=5)
            self.watcher = None

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global exit_code
        exit_code = 1  # until every job is known to have finished: Hydra turns an error here into a warning
        self.stop_watching()
        sweep_dir = Path(str(config.hydra.sweep.dir))
        rows = job_rows(sweep_dir, self.started)
        bad = [r for r in rows if r["this_sweep"] and r["status"] not in FINISHED]
        exit_code = 1 if bad else 0
        if self.show:
            from rich.markup import escape

            console = _console()
            console.print(sweep_table(rows, sweep_dir, console))
            if bad:
                console.print(f"[red]{len(bad)} of {len(rows)} jobs did not finish[/]: "
                              + escape(", ".join(f"{r['job']} ({r['status']})" for r in bad)), highlight=False)
            console.print(f"sweep folder: {escape(str(sweep_dir))}", highlight=False, soft_wrap=True)


def expect(jobs: int) -> None:
    """The sweeper's count of the jobs it will launch, for the progress lines."""
    if active is not None:
        active[0].total = jobs


def _console():
    from rich.console import Console  # here: `runner --help` does not import rich

    from runner.common.console import for_output

    return for_output(Console())


def read_summary(job: Path) -> dict[str, Any] | str | None:
    """A job folder's summary.json, checked (runner.common.schema); None when there is none; the reason
    (`unreadable: ...`) when it cannot be used."""
    try:
        found, summary = read_json(job, "summary.json")
        return check_summary(summary) if found else None
    except Unreadable as e:
        return f"unreadable: {e}"
    except ValueError as e:  # check_summary's
        return f"unreadable: summary.json: {e}"


def job_status(job: Path, since: float, cache: dict[Path, tuple[float, str]] | None = None) -> str | None:
    """The status of a job folder's run of this sweep (started after `since`); None while it runs;
    `unreadable` when its summary cannot be used."""
    try:
        if (job / SKIPPED).stat().st_mtime >= since:
            return "skipped"
    except OSError:
        pass
    path = job / "summary.json"
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    if mtime < since:  # an earlier attempt's, about to be replaced
        return None
    cache = {} if cache is None else cache
    if cache.get(path, (None,))[0] != mtime:  # read each summary once
        summary = read_summary(job)
        cache[path] = (mtime, summary["status"] if isinstance(summary, dict) else "unreadable")
    return cache[path][1]


def scan(sweep_dir: Path, since: float, cache: dict[Path, tuple[float, str]]) -> tuple[Counter, int]:
    """(statuses of the jobs of this sweep that ended, jobs running) from the job folders at the
    top of `sweep_dir` (Hydra's subdir, the job number by default): a few file stats per job."""
    done, running = Counter(), 0
    for job in sweep_dir.iterdir() if sweep_dir.is_dir() else ():
        if job.is_symlink():  # not a job of this sweep: a link to elsewhere is not followed
            continue
        try:
            if (job / ".hydra" / "overrides.yaml").stat().st_mtime < since:
                continue  # a job of an earlier sweep into this folder
        except OSError:
            continue  # not a job folder
        status = job_status(job, since, cache)
        if status is None:
            running += 1
        else:
            done[status] += 1
    return done, running


def progress_line(done: Counter, total: int | None, elapsed: float, running: int | None = None,
                  job: int | None = None) -> str:
    """`sweep job 3/12: ...` as job 3 starts, or `sweep 5/12 done: ...` (jobs elsewhere): how many
    completed, diverged and failed (other endings when there are some), time so far and ETA."""
    from runner.common.console import clock

    n = sum(done.values())
    of = f"/{total}" if total else " (of an unknown number)"
    head = f"sweep job {job}{of}" if job is not None else f"sweep {n}{of} done"
    counts = [f"{done[s]} {s}" for s in ("completed", "diverged", "failed")]
    counts += [f"{c} {s}" for s, c in done.items() if s not in ("completed", "diverged", "failed")]
    parts = [f"{head}: " + ", ".join(counts)] + ([f"{running} running"] if running else []) + [clock(elapsed)]
    if total and n:
        parts.append(f"ETA {clock(max(total - n, 0) * elapsed / n)}")
    return " · ".join(parts)


def job_rows(sweep_dir: Path, since: float = 0.0) -> list[dict[str, Any]]:
    """One row per job folder (a folder with Hydra's `.hydra/` record), in job-number order.
    `this_sweep`: Hydra started the job after `since` (folders of earlier sweeps into the same
    folder are shown, but decide nothing); `skipped`: its config had finished before."""
    rows = []
    for record in sorted(sweep_dir.glob("**/.hydra/overrides.yaml"), key=lambda p: _job_key(p.parent.parent, sweep_dir)):
        job = record.parent.parent
        summary = read_summary(job)
        touched = max(_mtime(record), _mtime(job / "summary.json") if summary is not None else 0.0)
        status = summary if isinstance(summary, str) else summary["status"] if summary else "no summary"
        rows.append({"job": str(job.relative_to(sweep_dir)), "overrides": _overrides(job), "status": status,
                     "summary": summary if isinstance(summary, dict) else {},
                     "this_sweep": touched >= since, "skipped": (job / SKIPPED).exists()})
    return rows


def _job_key(job: Path, root: Path) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in job.relative_to(root).parts)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _overrides(job: Path) -> list[str]:
    try:
        found, overrides = read_yaml(job, ".hydra/overrides.yaml")
    except Unreadable as e:
        return [f"({e})"]
    return [str(o) for o in overrides] if isinstance(overrides, list) else ["(.hydra/overrides.yaml: not a list)"]


def sweep_table(rows: list[dict[str, Any]], sweep_dir: Path, console: Console | None = None):
    """A rich table: job, overrides, status, the primary metric's and key metrics' final values, the
    verdict, steps and time. On a console too narrow for it all, the key metrics go, last first (each
    summary.json has them) after the time column, so the overrides never shrink to a letter a line."""
    primaries = {r["summary"].get("convergence", {}).get("conv/metric") for r in rows} - {None, ""}
    one_primary = primaries.pop() if len(primaries) == 1 else None
    extra = [k for k in KEY_METRICS if k != one_primary and any(k in r["summary"].get("final", {}) for r in rows)]
    choices = [(extra, True)] + [(extra[:n], False) for n in range(len(extra), -1, -1)]
    for keys, timed in choices:
        hidden = [k for k in extra if k not in keys] + ([] if timed else ["time"])
        note = f"not shown at {console.width} columns: {', '.join(hidden)} (in each job's summary.json)" if hidden else ""
        table = _table(rows, sweep_dir, one_primary, keys, timed, note)
        if console is None or _width(console, table) <= console.width:
            return table
    return _table(rows, sweep_dir, one_primary, [], False, note, least=False)  # narrower still: rich wraps freely


def _width(console: Console, table) -> int:
    """The columns the table takes as rich lays it out at this console's width, before the console
    crops its lines (rich keeps each column's min_width even where that makes the table wider)."""
    from rich.segment import Segment

    return max(Segment.get_line_length(line) for line in Segment.split_lines(console.render(table, console.options)))


def _table(rows: list[dict[str, Any]], sweep_dir: Path, one_primary: str | None, extra: list[str], timed: bool,
           note: str = "", least: bool = True):
    from rich.markup import escape
    from rich.table import Table

    from runner.common.console import short_verdict

    split = [r["overrides"] for r in rows]
    common = [o for o in split[0] if all(o in other for other in split)] if len(rows) > 1 else []
    caption = "\n".join(line for line in (f"every job: {' '.join(common)}" if common else "", note) if line)
    table = Table(title=escape(f"sweep: {len(rows)} jobs in {sweep_dir}"), header_style="bold",
                  caption=escape(caption) or None)
    for name, justify in (("job", "right"), ("overrides", "left"), ("status", "left"),
                          (one_primary or "primary", "right"), *((k, "right") for k in extra), ("verdict", "left"),
                          ("steps", "right"), *((("time", "right"),) if timed else ())):
        table.add_column(name, justify=justify, overflow="fold", no_wrap=name not in WRAPPED,
                         min_width=WRAPPED.get(name) if least else None, max_width=60 if name == "status" else None)
    for r in rows:
        s, colour = r["summary"], {"completed": "green", "diverged": "yellow"}.get(r["status"], "red")
        final = s.get("final", {})
        metric = s.get("convergence", {}).get("conv/metric")
        primary = _fmt(final.get(metric)) if one_primary else f"{metric}={_fmt(final.get(metric))}" if metric else "-"
        status = f"[{colour}]{escape(r['status'])}[/]" + (" (earlier)" if r["skipped"] else "")
        if r["status"] not in FINISHED and s.get("error"):
            status += f"\n[dim]{escape(s['error'][:120])}[/]"
        table.add_row(escape(r["job"]), escape(" ".join(o for o in r["overrides"] if o not in common) or "(defaults)"),
                      status, escape(primary), *(escape(_fmt(final.get(k))) for k in extra),
                      escape(short_verdict(s.get("convergence", {}))) if r["status"] in FINISHED else "-",
                      str(s.get("steps", "-")),
                      *((f"{s['wall_time_s']:.1f} s" if is_number(s.get("wall_time_s")) else "-",) if timed else ()))
    return table


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def objective(run_dir: Path, metric: str | None, use: str, minimize: bool) -> float:
    """The value a sweeper optimises: the `use` ("final" or "best") value of `metric` (None: the
    task's primary metric). A run that failed, diverged or never reported it gets the worst value
    for the direction (+inf when minimising), so a study records it and carries on."""
    worst = math.inf if minimize else -math.inf
    summary = read_summary(run_dir)
    if not isinstance(summary, dict):  # none, or unreadable
        return worst
    metric = metric or summary["convergence"].get("conv/metric")
    value = summary.get(use, {}).get(metric)
    if summary["status"] != "completed" or not is_number(value) or not math.isfinite(value):
        return worst
    return float(value)
