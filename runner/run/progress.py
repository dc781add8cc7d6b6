"""What a person sees in the terminal: a rich progress bar with live loss, accuracy and steps
per second on a terminal; plain periodic lines otherwise (CI, SLURM logs); at the end a summary
table with the run folder's path, or in a sweep one line per job (the sweep's table comes last).

The bar is laid out for the width it gets: the count, speed, elapsed time and ETA keep their
place; the live metrics give way first, then the title, then the bar.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.progress import Progress, ProgressBar, ProgressColumn, Task
from rich.table import Column, Table
from rich.text import Text

from runner.common.console import clock, short_verdict

LIVE_KEYS = ("train/loss", "eval/acc", "eval/loss")
BAR = (10, 30)  # the bar's narrowest and widest (columns)
SEP = "  "  # between live metrics
TITLE = 20  # the title's columns before the live metrics get any
COLOURS = {"completed": "green", "diverged": "yellow"}  # any other status is red


def bar_title(name: str, seed: int) -> str:
    """The bar's title: the seed first (jobs of a sweep often differ only by it), then the overrides."""
    return f"seed={seed}" if name == "default" else f"seed={seed} {name}"


def fit(width: int, name: str, fixed: str, live: str) -> tuple[int, int, str]:
    """The title's and the bar's widths and the live metrics shown, on a line of `width` columns
    that keeps `fixed` (count, speed, times) whole. Beside the narrowest bar the room goes in turn
    to the title (up to TITLE columns), the metrics (whole ones only), the rest of the title and a
    wider bar: the metrics give way first, then the title, then the bar."""
    room = width - len(fixed) - 2 - BAR[0]  # a space after the title and after the bar
    want = {"title": len(name), "live": len(live) + 1 if live else 0, "bar": BAR[1] - BAR[0]}
    got = dict.fromkeys(want, 0)
    for part, cap in (("title", TITLE), ("live", None), ("title", None), ("bar", None)):
        limit = want[part] if cap is None else min(cap, want[part])
        take = max(min(limit - got[part], room), 0)
        got[part], room = got[part] + take, room - take
    if got["live"] < want["live"]:  # a metric cut in the middle says nothing: keep whole ones
        entries = live.split(SEP)
        while entries and len(SEP.join(entries)) + 1 > got["live"]:
            entries.pop()
        return fit(width, name, fixed, SEP.join(entries))
    return got["title"], BAR[0] + got["bar"] if room >= 0 else max(BAR[0] + room, 0), live


class _Line(ProgressColumn):
    """The whole bar as one column: it is laid out by `fit` for the width rich gives it."""

    def render(self, task: Task) -> _Fitted:
        return _Fitted(task)


class _Fitted:
    def __init__(self, task: Task):
        self.task = task

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        t = self.task
        fixed = "  ".join(p for p in (f"{t.completed:.0f}/{t.total:.0f}", t.fields["rate"],
                                      f"{clock(t.elapsed)} ETA {t.fields['eta']}") if p)
        n_title, n_bar, live = fit(options.max_width, t.description, fixed, t.fields["live"])
        cells = (Text(t.description, style="bold"), ProgressBar(t.total, t.completed, width=n_bar),
                 Text(fixed), Text(live, style="dim"))
        shown = [(c, w) for c, w in zip(cells, (n_title, n_bar, len(fixed), len(live))) if w > 0]
        grid = Table.grid(*(Column(width=w, no_wrap=True, overflow="ellipsis") for _, w in shown), padding=(0, 1))
        grid.add_row(*(c for c, _ in shown))
        yield grid


def _live(record: Mapping[str, float], shown: dict[str, float], keys: tuple[str, ...]) -> str:
    shown.update({k: record[k] for k in keys if k in record})
    return SEP.join(f"{k} {v:.4g}" for k, v in shown.items())


class Reporter:
    """Progress for one run, with the latest values of LIVE_KEYS and of `primary` (the task's
    convergence metric). Plain lines are printed at most every `every_s` seconds. A transient bar
    (jobs of a sweep) leaves the terminal once the run ends."""

    def __init__(self, console: Console, total: int, title: str, primary: str = "", every_s: float = 5.0,
                 transient: bool = False):
        self.console, self.total, self.every_s = console, total, every_s
        self.keys = tuple(dict.fromkeys((*LIVE_KEYS, primary) if primary else LIVE_KEYS))
        self.shown: dict[str, float] = {}
        self.last_print = -float("inf")
        self.bar: Progress | None = None
        if console.is_terminal:
            self.bar = Progress(_Line(), console=console, transient=transient)
            self.task_id = self.bar.add_task(title, total=total, rate="", eta=clock(None), live="")
            self.bar.start()
        else:
            console.print(f"{title}: {total} steps" if total else f"{title}: no training steps", highlight=False)

    def update(self, record: Mapping[str, float]) -> None:
        step = int(record["step"])
        live = _live(record, self.shown, self.keys)
        if step > self.total:  # a measurement after training (a task's assess(), e.g. a sampler grid)
            self.console.print(f"after training, step {step}: " + "  ".join(
                f"{k} {v:.4g}" for k, v in record.items() if "/" in k and not k.startswith(("time/", "train/"))),
                highlight=False, soft_wrap=True)
            return
        elapsed = record.get("time/elapsed_s") or 0.0
        rate = step / elapsed if elapsed else 0.0
        eta = clock((self.total - step) / rate if rate else None)
        if self.bar is not None:
            self.bar.update(self.task_id, completed=step, rate=f"{rate:,.0f}/s", eta=eta, live=live)
        elif time.monotonic() - self.last_print >= self.every_s or step == self.total:
            self.last_print = time.monotonic()
            self.console.print(f"step {step}/{self.total}  {rate:,.0f} steps/s  {clock(elapsed)} ETA {eta}  {live}",
                               highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def records_after(metrics: Path, step: int) -> int:
    """How many records of `metrics.jsonl` come after training step `step` (a task's assess()). A
    line that is not a record (a last line cut short by a full disk) does not count, nor does a
    file that cannot be read: this only words the closing line."""
    import json

    from runner.common.runfiles import MAX_RECORDS_BYTES, Unreadable, read_text
    from runner.common.schema import is_number

    try:
        text = read_text(metrics.parent, metrics.name, MAX_RECORDS_BYTES) or ""
    except Unreadable:
        return 0
    count = 0
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        count += isinstance(record, dict) and is_number(record.get("step")) and record["step"] > step
    return count


def work(summary: Mapping[str, Any], after: int = 0) -> str:
    """What the run did: its steps, and the measurements after training (a diffusion sampler grid)."""
    if not after:
        return f"{summary['steps']} steps"
    measured = f"{after} measurement{'s' if after != 1 else ''}"
    return f"{measured} (no training steps)" if not summary["steps"] else f"{summary['steps']} steps + {measured} after training"


def job_line(summary: Mapping[str, Any], after: int = 0) -> Text:
    """A sweep job's closing line: status, primary metric, what it did and in what time, why it
    stopped (diverged, failed), its folder."""
    status, metric = summary["status"], (summary.get("convergence") or {}).get("conv/metric")
    value = (summary.get("final") or {}).get(metric)
    line = Text.assemble((status, COLOURS.get(status, "red")))
    if value is not None:
        line.append(f"  {metric} {_fmt(value)}")
    if status in ("completed", "diverged") and (summary.get("convergence") or {}).get("conv/kind"):
        line.append(f"  {short_verdict(summary['convergence'])}")
    line.append(f"  {work(summary, after)} in {summary['wall_time_s']:.1f} s")
    if summary.get("error"):
        line.append(f"  {summary['error']}", style="dim")
    return line.append(f"  {summary['run_dir']}")


def summary_table(summary: Mapping[str, Any], run_dir: Path, after: int = 0) -> Table:
    status = summary["status"]
    table = Table(title=f"[{COLOURS.get(status, 'red')}]{status}[/]  {work(summary, after)} in "
                        f"{summary['wall_time_s']:.1f} s on {summary['device']}", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("final", justify="right")
    table.add_column("best", justify="right")
    for key, value in summary["final"].items():
        table.add_row(key, _fmt(value), _fmt(summary["best"].get(key)))
    conv = summary.get("convergence") or {}
    for name, hit in (summary.get("targets") or {}).items():
        table.add_row(f"reached {name}", f"step {hit['step']}{_after(hit.get('after'))}", f"{hit['time_s']:.2f} s")
    if summary.get("error"):
        table.caption = f"[red]{summary['error']}[/]"
    return table


def verdict_line(summary: Mapping[str, Any]) -> Text | None:
    """The convergence verdict in one line under the table (it is too long for a cell at 80 columns)."""
    conv = summary.get("convergence") or {}
    if not conv.get("conv/reason"):
        return None
    return Text.assemble(("verdict", "bold"), f" on {conv['conv/metric']}: {conv['conv/reason']}")


def _after(after: Any) -> str:
    return "" if after is None else f" (after {after})"


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.5g}" if isinstance(v, float) else str(v)
