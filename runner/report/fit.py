"""The convergence verdicts in a report: each run's, read from summary.json["convergence"] (the keys
of runner.task.convergence; older run folders lack some and still read), and each group's across seeds.

Across the n seeds of a group that share a kind: a rate is averaged on the log scale (a geometric
mean, interval exp(mean log r +- t(0.975, n-1) s / sqrt(n)), so never negative); an exponent or an
order, already a slope of log g, is averaged as it is, with the same t-interval. n >= 3: that 95%
Student-t interval. n = 2: the two values (the t-interval on one degree of freedom, t = 12.7, is
wider than the data and says less than the two numbers). n = 1: the run's own fitted 95% interval.
Seeds whose kinds differ are not averaged together: the value is that of the majority kind's
seeds, when there is a majority, and the table says so. R² is never shown or averaged: it does
not say whether a law holds (a 3-point fit has R² near 1 whatever the data).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from runner.report.aggregate import t_interval
from runner.report.results import Group, Run
from runner.report.text import number

NAMES = {"conv/rate": "rate", "conv/exponent": "exponent", "conv/order": "order"}
TRENDS = ("linear", "sublinear", "diverging")  # the kinds whose rate, exponent or order means something


@dataclass
class RunFit:
    kind: str
    measure: str | None                    # conv/rate, conv/exponent or conv/order; None: no trend fitted
    value: float | None
    ci: tuple[float, float] | None         # the fit's own 95% interval (newer runs only)
    window: tuple[float, float] | None     # first and last point fitted, in conv/x units (step, or NFE)
    points: int | None
    reason: str


@dataclass
class Stat:
    centre: float
    lo: float | None
    hi: float | None
    n: int
    how: str  # "t" (95% t over n >= 3 seeds), "range" (the 2 seeds' values), "run" (the run's fit)


@dataclass
class GroupFit:
    kinds: str                 # "linear (3/3)", or "linear (2/3), none (1/3)"
    lead: str | None           # the majority kind, if there is one
    measure: str | None
    stat: Stat | None
    note: str                  # what was left out of the average, and why


def measure_of(conv: dict) -> str | None:
    """The quantity that the verdict's law is stated in: the order (diffusion), the rate of an
    exponential law, or the exponent of a power law (older runs: by their kind)."""
    if conv.get("conv/order") is not None:
        return "conv/order"
    kind, model = conv.get("conv/kind"), conv.get("conv/model")
    if kind not in TRENDS:
        return None
    key = ("conv/rate" if model == "exponential" or (model is None and kind == "linear")
           else "conv/exponent" if model in ("power", "shifted_power") or (model is None and kind == "sublinear") else None)
    return key if key and conv.get(key) is not None else None


def run_fit(run: Run) -> RunFit:
    conv = run.summary.get("convergence") or {}
    key = measure_of(conv)
    ci, window = conv.get(f"{key}_ci") if key else None, conv.get("conv/window")
    return RunFit(conv.get("conv/kind") or "none", key, conv.get(key) if key else None,
                  tuple(ci) if ci and None not in ci else None, tuple(window) if window else None,
                  conv.get("conv/points"), conv.get("conv/reason") or "-")


def seed_stat(fits: Sequence[RunFit], log: bool) -> Stat | None:
    """Centre and interval of the fits' values (see the module docstring); log: a rate."""
    values = np.array([f.value for f in fits], dtype=float)
    if not values.size:
        return None
    if values.size == 1:
        lo, hi = fits[0].ci or (None, None)
        return Stat(float(values[0]), lo, hi, 1, "run")
    y = np.log(values) if log else values
    back = np.exp if log else (lambda v: v)
    if values.size == 2:
        return Stat(float(back(y.mean())), float(values.min()), float(values.max()), 2, "range")
    mean, half, n = t_interval(y)
    return Stat(float(back(mean)), float(back(mean - half)), float(back(mean + half)), int(n), "t")


def group_fit(group: Group) -> GroupFit:
    fits = [run_fit(r) for r in group.finished()]
    kinds = Counter(f.kind for f in fits).most_common()
    if not kinds:
        return GroupFit("-", None, None, None, "no finished run")
    text = ", ".join(f"{k} ({c}/{len(fits)})" for k, c in kinds)
    lead, count = kinds[0]
    if 2 * count <= len(fits) and len(kinds) > 1:
        return GroupFit(text, None, None, None, "kinds differ, none in the majority: not averaged")
    same = [f for f in fits if f.kind == lead and f.measure]
    if not same:
        return GroupFit(text, lead, None, None, "")
    measure = Counter(f.measure for f in same).most_common(1)[0][0]
    used = [f for f in same if f.measure == measure]
    notes = [f"over the {len(used)} {lead} seeds only (kinds differ)" if len(kinds) > 1 else "",
             f"{len(same) - len(used)} {lead} seeds fitted another law, left out" if len(used) < len(same) else ""]
    return GroupFit(text, lead, measure, seed_stat(used, measure == "conv/rate"), "; ".join(n for n in notes if n))


def value_text(stat: Stat | None) -> str:
    """`centre [lo, hi]`; for two seeds `a to b`; a run without an interval: its value alone."""
    if stat is None:
        return "-"
    if stat.lo is None or stat.hi is None:
        return number(stat.centre)
    width = stat.hi - stat.lo
    ends = number(stat.lo, width), number(stat.hi, width)
    if ends[0] == ends[1]:  # the seeds (or the fit) agree to seven digits
        return f"{number(stat.centre, width)} ({'both seeds' if stat.how == 'range' else 'interval within rounding'})"
    return f"{ends[0]} to {ends[1]}" if stat.how == "range" else f"{number(stat.centre, width)} [{ends[0]}, {ends[1]}]"


def how_text(stat: Stat | None, measure: str | None) -> str:
    if stat is None:
        return "-"
    mean = "geometric mean" if measure == "conv/rate" else "mean"
    return {"t": f"{mean}, 95% t ({stat.n} seeds)",
            "range": "the 2 seeds' values (too few for an interval)",
            "run": "1 seed: the run's own 95% interval" if stat.lo is not None else "1 seed (no interval recorded)"}[stat.how]


def run_value_text(fit: RunFit) -> str:
    if fit.measure is None:
        return "-"
    lo, hi = fit.ci or (None, None)
    return f"{NAMES[fit.measure]} {value_text(Stat(fit.value, lo, hi, 1, 'run'))}"


def window_text(windows: Sequence[tuple[float, float] | None]) -> str:
    known = sorted({w for w in windows if w})
    if not known:
        return "-"
    a, b = min(w[0] for w in known), max(w[1] for w in known)
    return f"{a:g}-{b:g}" + (" (seeds differ)" if len(known) > 1 else "")
