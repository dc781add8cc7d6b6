"""The report's stability figure: the final metrics against a swept learning rate, one line per
family of groups that differ in that key alone, with how many runs diverged at each value."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator

from runner.common.schema import is_number
from runner.report.aggregate import MIN_BAND, band
from runner.report.figures import colours, panels_figure, plain
from runner.report.results import Group


def lr_figure(groups: Sequence[Group], key: str, metrics: Sequence[str], log_metrics: set[str]) -> Figure | None:
    """Final value of each metric against the swept learning rate `key`, one line per family of
    groups that differ in `key` alone: mean and 95% interval over the completed runs (geometric
    for log-scaled metrics); red k/n over a point: k of its n runs diverged or failed."""
    families: dict[str, list[Group]] = {}
    for g in groups:
        if is_number(v := g.config.get(key)) and math.isfinite(v) and v > 0:  # a point on a log axis
            rest = json.dumps({k: v for k, v in g.config.items() if k != key}, sort_keys=True, default=str)
            families.setdefault(rest, []).append(g)
    families = {k: sorted(f, key=lambda g: float(g.config[key])) for k, f in families.items() if len(f) > 1}
    completed = [r for f in families.values() for g in f for r in g.runs if r.status == "completed"]
    metrics = [m for m in metrics if any(_finite(r.summary["final"].get(m)) for r in completed)]
    if not metrics:
        return None
    handles = [Line2D([], [], color=c, marker="o", label=plain(family_name(f[0], key)))
               for f, c in zip(families.values(), colours(len(families)))]
    fig, panels = panels_figure(max(len(metrics), 2), len(metrics), handles)
    lrs_all = sorted({float(g.config[key]) for f in families.values() for g in f})
    for ax, metric in zip(panels, metrics):
        log = metric in log_metrics
        for family, colour in zip(families.values(), colours(len(families))):
            if not any(metric in r.summary.get("final", {}) for g in family for r in g.runs):
                continue
            lrs = [float(g.config[key]) for g in family]
            mean, lo, hi = _final_stats(family, metric, log)
            ax.errorbar(lrs, mean, yerr=[mean - lo, hi - mean], color=colour, marker="o", ms=4, capsize=3)
            for lr, g in zip(lrs, family):  # too few runs for a bar: the runs' own values
                few = [v for r in g.runs if r.status == "completed" and _finite(v := r.summary["final"].get(metric))]
                if 1 < len(few) < MIN_BAND:
                    ax.plot([lr] * len(few), few, ls="none", marker="_", ms=9, mew=1.5, color=colour)
            for lr, g in zip(lrs, family):
                bad = sum(r.status in ("diverged", "failed") for r in g.runs)
                if bad:
                    ax.annotate(f"{bad}/{len(g.runs)}", (lr, 1.0), xycoords=("data", "axes fraction"),
                                ha="center", va="bottom", color=colour, fontsize=8, weight="bold")
        ax.set_xscale("log")
        ax.set_xlim(lrs_all[0] / 1.5, lrs_all[-1] * 1.5)
        ax.set_yscale("log" if log else "linear")
        ax.xaxis.set_major_locator(FixedLocator(lrs_all))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([f"{v:g}" for v in lrs_all], fontsize=8)
        ax.set(xlabel=plain(key), ylabel=plain(f"final {metric}"))
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"final metrics against {plain(key)}: mean over completed runs{' (geometric on log axes)' if log_metrics else ''}\n"
                 f"bars: 95% t-interval where {MIN_BAND}+ runs; 2 runs: no bar, each value a dash\n"
                 "k/n above the plot: k of the n runs at that learning rate diverged or failed (not in the mean)", fontsize=10)
    return fig


def family_name(group: Group, key: str) -> str:
    """The name of the groups that differ from `group` in `key` alone: its automatic name without `key`."""
    return " ".join(f"{short}={v}" for k, short, v in group.parts if k != key) or "all runs"


def _final_stats(family: Sequence[Group], metric: str, log: bool) -> tuple[np.ndarray, ...]:
    """Mean and interval ends of the final `metric` over each group's completed runs."""
    rows = []
    for g in family:
        values = [r.summary["final"].get(metric) for r in g.runs if r.status == "completed"]
        values = [math.log10(v) for v in values if _finite(v) and v > 0] if log else values
        a = np.array([v for v in values if _finite(v)], dtype=float)
        mean, lo, hi, _ = band(a) if a.size else (np.nan,) * 4
        rows.append((mean, mean if np.isnan(lo) else lo, mean if np.isnan(hi) else hi))
    a = np.array(rows, dtype=float).T
    return tuple(10 ** a) if log else tuple(a)


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)
