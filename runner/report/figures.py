"""The report's figures (matplotlib, no pyplot state): one figure per metric with a panel per
x-axis (step, training time, gradient evaluations; a sampler's NFE alone) and a line per group, a
band from 3 seeds, the runs themselves drawn thin for 2; and the pieces the other figures share
(colours, the panels and legend, the files). Every figure says in its title what its line and
band are.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from runner.report.aggregate import AXES, MIN_BAND, Curve, curve, never_negative, tracks
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
    """`metric` against each x-axis it was logged with: mean line and band per group (a group of
    fewer than MIN_BAND runs: no band, its runs drawn thin), an x where a run diverged. The y-range
    follows the groups with a completed run, so one blow-up does not flatten every other curve; a
    divergence beyond it is marked at the edge."""
    kind, param = scale
    floor = param if kind == "log" else None
    every = {id(g): {a: curve(g.runs, metric, a, floor) for a in AXES} for g in groups}
    axes = [a for a in AXES if any(d[a] for d in every.values())]
    axes = ["nfe"] if "nfe" in axes else axes  # a sampler's error: against NFE alone (its step is not a time)
    drawn = {k: {a: d[a] for a in axes} for k, d in every.items()}
    cut = kind == "linear" and never_negative([r for g in groups for r in g.runs], metric) and _cut(drawn)
    seeds = {id(g): max(int(k.n.max()) for k in drawn[id(g)].values() if k) for g in groups if any(drawn[id(g)].values())}
    handles = [Line2D([], [], color=c, lw=2, label=plain(f"{g.label} ({few_text(seeds[id(g)])})"))
               for g, c in zip(groups, colours(len(groups))) if id(g) in seeds]
    fig, panels = panels_figure(max(len(axes), 1.6), len(axes), handles, sharey=True)  # room for the title
    steady = {id(g) for g in groups if any(r.status == "completed" for r in g.runs)} or {id(g) for g in groups}
    spread = []  # the runs drawn thin: in the y-range as bands are
    for ax, axis in zip(panels, axes):
        if kind != "linear":
            ax.set_yscale(kind, **({"linthresh": param} if kind == "symlog" else {}))
        for g, colour in zip(groups, colours(len(groups))):
            c = drawn[id(g)][axis]
            if c is None:
                continue
            if seeds[id(g)] == 2:  # the mean of two runs says little without them
                for run in g.runs:
                    for _, y, x in tracks([run], metric, axis, floor):
                        y = 10 ** y if floor else y
                        ax.plot(x, y, color=colour, lw=0.7, alpha=0.5, gid=f"{g.label} seed {run.seed}")
                        spread += [y] if id(g) in steady else []
            ax.plot(c.x, c.mean, color=colour, lw=1.4)
            ax.fill_between(c.x, c.lo, c.hi, color=colour, alpha=0.2, lw=0)
        ax.set_xlabel(AXES[axis])
        ax.set_xscale("log" if axis == "nfe" else "linear")
        ax.grid(True, alpha=0.3, which="both" if kind == "log" else "major")
    _limit(panels[0], [drawn[id(g)][a] for g in groups if id(g) in steady for a in axes], kind, spread)
    for ax, axis in zip(panels, axes):
        for g, colour in zip(groups, colours(len(groups))):
            _mark_divergence(ax, g, metric, axis, colour)
    panels[0].set_ylabel(plain(metric))
    what = ("geometric mean over seeds; band: 95% t-interval of log10 values" if kind == "log"
            else "mean over seeds; band: 95% t-interval of the mean across seeds")
    fewest = min(seeds.values(), default=MIN_BAND)
    if max(seeds.values(), default=1) == 1:
        what = "one run per group: no mean over seeds, no band"
    elif fewest < MIN_BAND:
        what += f" where {MIN_BAND}+ seeds; {FEW}"
    what += "; bands cut at 0, below which the metric never goes" if cut else ""
    fig.suptitle(f"{plain(metric)}\n{what}; x = a run diverged there", fontsize=10)
    return fig


def _cut(drawn: dict) -> bool:
    """Bands of a metric that is never negative cut at 0 (a t-interval below it is the normal
    approximation failing, not a possible mean); whether any was."""
    below = False
    for c in (c for d in drawn.values() for c in d.values() if c is not None):
        below |= bool((c.lo < 0).any())
        c.lo = np.maximum(c.lo, 0.0)  # NaN (no band) stays NaN
    return below


FEW = "1 or 2 seeds: no band, each run a thin line"


def few_text(n: int) -> str:
    """What a legend says of a group of n runs: n, and that it has no band when n < MIN_BAND."""
    return f"n={n}" if n >= MIN_BAND or n == 1 else f"n={n}, no band"


def _limit(ax, curves: Sequence[Curve | None], kind: str, spread: Sequence[np.ndarray] = ()) -> None:
    """y-range of these curves: their means, and their bands and the `spread` of runs drawn thin up to
    half the means' range beyond."""
    drawn = [c for c in curves if c is not None]
    if not drawn:
        return
    to = (lambda v: np.log10(v[v > 0])) if kind == "log" else (lambda v: v)
    ranges = []
    for part in ("mean", "lo", "hi"):
        v = np.concatenate([to(np.asarray(getattr(c, part), dtype=float)) for c in drawn]
                           + [to(np.asarray(y, dtype=float)) for y in spread if part != "mean"])
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
