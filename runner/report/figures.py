"""The report's figures (matplotlib, no pyplot state): one figure per metric with a panel per
x-axis (step, training time, gradient evaluations) and a line per group, and the final metrics
against a swept learning rate. Every figure says in its title what its line and band are.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, NullLocator

from runner.common.schema import is_number
from runner.report.aggregate import AXES, Curve, band, curve
from runner.report.results import Group

WIDTH, HEIGHT = 5.2, 3.9  # inches per panel; the legend adds a row height per line of entries


def plain(text: object) -> str:
    """Text from a run folder (a group's overrides, a metric's or a key's name) as matplotlib shows
    it: every `$` escaped, so `$...$` is never parsed as math (an unparsable one stops savefig)."""
    return str(text).replace("$", r"\$")


def colours(n: int) -> list:
    """n distinguishable colours: tab10; tab20 with its dark shades first; viridis beyond 20."""
    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in [*range(0, 20, 2), *range(1, 20, 2)][:n]]
    return [colormaps["viridis"](i / (n - 1)) for i in range(n)]


def metric_figure(groups: Sequence[Group], metric: str, scale: tuple[str, float | None]) -> Figure:
    """`metric` against each x-axis it was logged with: mean line and band per group, an x where a
    run diverged. The y-range follows the groups with a completed run, so one blow-up does not
    flatten every other curve; a divergence beyond it is marked at the edge."""
    kind, param = scale
    floor = param if kind == "log" else None
    every = {id(g): {a: curve(g.runs, metric, a, floor) for a in AXES} for g in groups}
    axes = [a for a in AXES if any(d[a] for d in every.values())]
    axes = ["nfe"] if "nfe" in axes else axes  # a sampler's error: against NFE alone (its step is not a time)
    drawn = {k: {a: d[a] for a in axes} for k, d in every.items()}
    seeds = {id(g): max(int(k.n.max()) for k in drawn[id(g)].values() if k) for g in groups if any(drawn[id(g)].values())}
    handles = [Line2D([], [], color=c, lw=2, label=plain(f"{g.label} (n={seeds[id(g)]})"))
               for g, c in zip(groups, colours(len(groups))) if id(g) in seeds]
    fig, panels = panels_figure(max(len(axes), 1.6), len(axes), handles, sharey=True)  # room for the title
    steady = [g for g in groups if any(r.status == "completed" for r in g.runs)] or list(groups)
    for ax, axis in zip(panels, axes):
        if kind != "linear":
            ax.set_yscale(kind, **({"linthresh": param} if kind == "symlog" else {}))
        for g, colour in zip(groups, colours(len(groups))):
            c = drawn[id(g)][axis]
            if c is not None:
                ax.plot(c.x, c.mean, color=colour, lw=1.4)
                ax.fill_between(c.x, c.lo, c.hi, color=colour, alpha=0.2, lw=0)
        ax.set_xlabel(AXES[axis])
        ax.set_xscale("log" if axis == "nfe" else "linear")
        ax.grid(True, alpha=0.3, which="both" if kind == "log" else "major")
    _limit(panels[0], [drawn[id(g)][a] for g in steady for a in axes], kind)
    for ax, axis in zip(panels, axes):
        for g, colour in zip(groups, colours(len(groups))):
            _mark_divergence(ax, g, metric, axis, colour)
    panels[0].set_ylabel(plain(metric))
    what = ("geometric mean over seeds; band: 95% t-interval of log10 values" if kind == "log"
            else "mean over seeds; band: 95% t-interval of the mean across seeds")
    what += " (2 seeds: their two values)"
    fig.suptitle(f"{plain(metric)}\n{what}; x = a run diverged there", fontsize=10)
    return fig


def _limit(ax, curves: Sequence[Curve | None], kind: str) -> None:
    """y-range of these curves: their means, and their bands up to half the means' range beyond."""
    drawn = [c for c in curves if c is not None]
    if not drawn:
        return
    to = (lambda v: np.log10(v[v > 0])) if kind == "log" else (lambda v: v)
    ranges = []
    for part in ("mean", "lo", "hi"):
        v = np.concatenate([to(np.asarray(getattr(c, part), dtype=float)) for c in drawn])
        v = v[np.isfinite(v)]
        ranges.append((v.min(), v.max()) if v.size else (np.nan, np.nan))
    (lo, hi), (band_lo, _), (_, band_hi) = ranges
    if not np.isfinite(lo):
        return
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.1
    lo, hi = np.nanmin([lo, max(band_lo, lo - span / 2)]), np.nanmax([hi, min(band_hi, hi + span / 2)])
    lo, hi = lo - 0.04 * (hi - lo or 1.0), hi + 0.04 * (hi - lo or 1.0)
    ax.set_ylim(*((10 ** lo, 10 ** hi) if kind == "log" else (lo, hi)))


def _mark_divergence(ax, group: Group, metric: str, axis: str, colour) -> None:
    lo, hi = ax.get_ylim()
    for run in group.runs:
        x, y = run.x(axis), run.columns.get(metric)
        if run.status != "diverged" or x is None or y is None:
            continue
        ok = np.flatnonzero(np.isfinite(x) & np.isfinite(y) & ((y > 0) if ax.get_yscale() == "log" else True))
        if ok.size:
            ax.plot(x[ok[-1]], min(max(y[ok[-1]], lo), hi), "x", color=colour, ms=7, mew=2, clip_on=False)


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
    handles = [Line2D([], [], color=c, marker="o", label=plain(" ".join(t for t in f[0].label.split()
                                                                        if not t.startswith(f"{key}=")) or "all runs"))
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
    fig.suptitle(f"final metrics against {plain(key)}: mean over completed runs ({'geometric on log axes, ' if log_metrics else ''}"
                 "bars: 95% t-interval; 2 runs: their values)\nk/n above the plot: k of the n runs at that learning rate diverged or failed (not in the mean)",
                 fontsize=10)
    return fig


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


def panels_figure(width: float, panels: int, handles: list[Line2D], **kwargs) -> tuple[Figure, Sequence]:
    """A figure `width` panels wide with `panels` panels side by side and the legend below them."""
    longest = max((len(h.get_label()) for h in handles), default=0)
    ncols = max(1, min(len(handles), int(width * WIDTH * 11 / max(longest + 6, 1))))
    rows = math.ceil(len(handles) / ncols) if handles else 0
    fig = Figure(figsize=(WIDTH * width, HEIGHT + 0.2 * rows), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False, **kwargs)[0]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", fontsize=9, frameon=False, ncols=ncols)
    return fig, axes


VECTOR = ("svg", "pdf")  # beside each PNG, for papers


def image(fig: Figure, kind: str) -> bytes:
    """`fig` as a `kind` file (png, svg, pdf); vector files without a date, so a report made twice
    from the same runs has the same bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format=kind, **({"dpi": 110} if kind == "png" else {"metadata": {"Date": None}}))
    return buf.getvalue()
