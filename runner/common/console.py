"""The console helpers a run, a sweep and a set-aside warning share: a console set for log files,
a clock for elapsed and remaining times, and a verdict short enough for a table cell."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console


def for_output(console: Console) -> Console:
    """`console`, set for a log file (CI, SLURM, `> file`) when it does not write to a terminal:
    rich would break lines at 80 columns there; now lines are written whole and tables get 160
    columns."""
    if not console.is_terminal:
        console.soft_wrap, console.width = True, max(console.width, 160)
    return console


def clock(seconds: float | None) -> str:
    """M:SS, or H:MM:SS from an hour; -:-- when unknown."""
    if seconds is None:
        return "-:--"
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}" if minutes >= 60 else f"{minutes}:{s:02d}"


def short_verdict(conv: Mapping[str, Any]) -> str:
    """The kind and its rate, exponent or order, for a table cell (summary.json has the interval)."""
    kind = conv.get("conv/kind")
    for key, name, fmt in (("conv/order", "order", ".3g"), ("conv/rate", "rate", ".6g"), ("conv/exponent", "exp", ".3g")):
        if conv.get(key) is not None and kind in ("linear", "sublinear", "diverging"):
            return f"{kind} {name} {conv[key]:{fmt}}"
    return kind or "-"
