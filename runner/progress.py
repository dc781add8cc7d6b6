"""What a person sees in the terminal: a rich progress bar with live loss, accuracy and steps
per second on a terminal; plain periodic lines otherwise (CI, SLURM logs); a summary table at
the end with the run folder's path."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

LIVE_KEYS = ("train/loss", "eval/acc", "eval/loss")


def _live(record: Mapping[str, float], shown: dict[str, float]) -> str:
    shown.update({k: record[k] for k in LIVE_KEYS if k in record})
    return "  ".join(f"{k} {v:.4g}" for k, v in shown.items())


class Reporter:
    """Progress for one run. Plain lines are printed at most every `every_s` seconds."""

    def __init__(self, console: Console, total: int, title: str, every_s: float = 5.0):
        self.console, self.total, self.every_s = console, total, every_s
        self.shown: dict[str, float] = {}
        self.last_print = -float("inf")
        self.bar: Progress | None = None
        if console.is_terminal:
            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                TextColumn("{task.fields[live]}"), console=console, transient=False)
            self.task_id = self.bar.add_task(title, total=total, rate="", live="")
            self.bar.start()
        else:
            console.print(f"{title}: {total} steps")

    def update(self, record: Mapping[str, float]) -> None:
        step = int(record["step"])
        live = _live(record, self.shown)
        if step > self.total:  # a measurement after training (a task's assess(), e.g. a sampler grid)
            self.console.print(f"after training, step {step}: " + "  ".join(
                f"{k} {v:.4g}" for k, v in record.items() if "/" in k and not k.startswith(("time/", "train/"))),
                highlight=False, soft_wrap=True)
            return
        rate = step / record["time/elapsed_s"] if record.get("time/elapsed_s") else 0.0
        if self.bar is not None:
            self.bar.update(self.task_id, completed=step, rate=f"{rate:,.0f} steps/s", live=live)
        elif time.monotonic() - self.last_print >= self.every_s or step == self.total:
            self.last_print = time.monotonic()
            self.console.print(f"step {step}/{self.total}  {rate:,.0f} steps/s  {live}", highlight=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def summary_table(summary: Mapping[str, Any], run_dir: Path) -> Table:
    status = summary["status"]
    colour = {"completed": "green", "diverged": "yellow"}.get(status, "red")
    table = Table(title=f"[{colour}]{status}[/]  {summary['steps']} steps in {summary['wall_time_s']:.1f} s "
                        f"on {summary['device']}", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("final", justify="right")
    table.add_column("best", justify="right")
    for key, value in summary["final"].items():
        table.add_row(key, _fmt(value), _fmt(summary["best"].get(key)))
    conv = summary.get("convergence") or {}
    if conv.get("conv/kind"):
        fit = (f"rate {conv['conv/rate']:.6g}/step" if conv["conv/kind"] == "linear"
               else f"exponent {conv['conv/exponent']:.3g}")
        table.add_row(f"fit of {conv['conv/metric']}", f"{conv['conv/kind']}: {fit}", f"R² {conv['conv/r2']:.3f}")
    for name, hit in (summary.get("targets") or {}).items():
        table.add_row(f"reached {name}", f"step {hit['step']}", f"{hit['time_s']:.2f} s")
    if summary.get("error"):
        table.caption = f"[red]{summary['error']}[/]"
    return table


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.5g}" if isinstance(v, float) else str(v)
