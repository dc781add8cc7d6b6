"""The report's convergence figures: how the local rate evolves along each run (`conv/local`, a fit
over a sliding window) so a reader sees where the asymptotic regime starts, with the fit window
marked; and a sampler's error against its NFE on log-log axes with the fitted order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from runner.report.aggregate import curve, median_curve
from runner.report.figures import colours, panels_figure, plain
from runner.report.fit import NAMES, group_fit, value_text
from runner.report.results import Group, Run

COLUMN = {"rate": 1, "exponent": 2}  # conv/local entries are [step, local rate, local exponent]


def conv(run: Run) -> dict:
    return run.summary.get("convergence") or {}


def on_nfe(run: Run) -> bool:
    return conv(run).get("conv/x") == "diff/nfe"


def fit_span(run: Run, axis: str = "step") -> tuple[float, float] | None:
    """The fit window (conv/window, in the units of conv/x: steps, or NFE) in `axis` units, mapped
    through the records when they differ; runs older than conv/window: the last conv/points records."""
    window, points = conv(run).get("conv/window"), conv(run).get("conv/points")
    unit = "nfe" if on_nfe(run) else "step"
    if window and unit == axis:
        return float(window[0]), float(window[1])
    x, known = run.x(axis), run.x(unit)
    if x is None or known is None:
        return None
    ok = np.isfinite(x) & np.isfinite(known)
    x, known = x[ok], known[ok]
    if window:
        return float(np.interp(window[0], known, x)), float(np.interp(window[1], known, x))
    return (float(x[-points]), float(x[-1])) if points and 0 < points <= x.size else None


def median_span(runs: Sequence[Run], axis: str = "step") -> tuple[float, float] | None:
    spans = [s for s in (fit_span(r, axis) for r in runs) if s]
    return (float(np.median([s[0] for s in spans])), float(np.median([s[1] for s in spans]))) if spans else None


def local_tracks(group: Group) -> list[np.ndarray]:
    return [np.array(conv(r)["conv/local"], dtype=float) for r in group.finished() if conv(r).get("conv/local")]


def draw_local(ax, group: Group, tracks: Sequence[tuple[np.ndarray, np.ndarray]], colour, span: tuple | None,
               fitted: float | None) -> list[np.ndarray]:
    """Thin lines the runs' local curves, a line their median, thick over the fit window (dotted:
    its start), dashed the fitted value there; returns what the y-range should show."""
    for x, y in tracks:
        ax.plot(x, y, color=colour, lw=0.6, alpha=0.35)
    x, y = median_curve(tracks)
    ax.plot(x, y, color=colour, lw=1.3, gid=f"median {group.label}")
    if not span:
        return [y]
    inside = (x >= span[0]) & (x <= span[1])
    ax.plot(x[inside], y[inside], color=colour, lw=3.5, alpha=0.8, solid_capstyle="butt", gid=f"window {group.label}")
    ax.axvline(span[0], color=colour, ls=":", lw=1)
    if fitted is None:
        return [y]
    ax.hlines(fitted, *span, colors=colour, linestyles="--", lw=1.2)
    return [y, np.array([fitted])]


def local_figure(groups: Sequence[Group]) -> Figure | None:
    """The local rate per step (linear, diverging and other groups) or local exponent (sublinear
    ones) against step, for groups fitted on steps (a sampler's local order is in order_figure)."""
    panels: dict[str, list] = {"rate": [], "exponent": []}
    for g, colour in zip(groups, colours(len(groups))):
        fit, tracks = group_fit(g), local_tracks(g)
        if tracks and not any(on_nfe(r) for r in g.finished()):
            which = "exponent" if fit.measure == "conv/exponent" or fit.lead == "sublinear" else "rate"
            panels[which].append((g, colour, fit, tracks))
    panels = {k: v for k, v in panels.items() if v}
    if not panels:
        return None
    handles = [Line2D([], [], color=c, lw=2, label=plain(f"{g.label}: {fit.kinds}")) for v in panels.values()
               for g, c, fit, _ in v]
    fig, axes = panels_figure(len(panels) + 0.5, len(panels), handles)
    for ax, (which, entries) in zip(axes, panels.items()):
        shown = []
        for g, colour, fit, tracks in entries:
            shifted = any(conv(r).get("conv/t0") for r in g.finished())  # its exponent is in t - t0, not in t
            fitted = fit.stat.centre if fit.stat and NAMES.get(fit.measure) == which and not (
                which == "exponent" and shifted) else None
            shown += draw_local(ax, g, [(t[:, 0], t[:, COLUMN[which]]) for t in tracks], colour,
                                median_span(g.finished()), fitted)
        _robust_limits(ax, np.concatenate(shown))
        ax.axhline(1.0 if which == "rate" else 0.0, color="grey", lw=0.8)
        ax.set_xscale("log" if which == "exponent" else "linear")
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ax.set(xlabel="step", ylabel="local rate per step" if which == "rate" else "local exponent d log g / d log t")
        ax.grid(True, alpha=0.3)
    fig.suptitle("local convergence rate over a sliding window: thin lines the runs, line the median across seeds;\n"
                 "thick: the fit window (dotted: its start), dashed: the value fitted there (not for a power law in t - t0)",
                 fontsize=10)
    return fig


def _robust_limits(ax, values: np.ndarray) -> None:
    """The 2nd-98th percentiles of the values, padded: an early transient does not flatten the rest."""
    v = values[np.isfinite(values)]
    if v.size:
        lo, hi = np.percentile(v, [2, 98])
        pad = (hi - lo) * 0.15 or abs(hi) * 1e-3 or 1e-3
        ax.set_ylim(lo - pad, hi + pad)


def order_figure(groups: Sequence[Group]) -> Figure | None:
    """For groups fitted on NFE: the error against NFE (log-log; dots the runs, a line the geometric
    mean across seeds, dashed the fitted order over its points), and where the runs recorded it the
    local order between neighbouring step counts, to see where the order settles."""
    entries = [g for g in groups if any(on_nfe(r) for r in g.finished())]
    if not entries:
        return None
    handles = []
    for g, colour in zip(entries, colours(len(entries))):
        fit = group_fit(g)
        text = f"order {value_text(fit.stat)}" if fit.measure == "conv/order" else fit.kinds
        handles.append(Line2D([], [], color=colour, marker="o", lw=1.5, label=plain(f"{g.label}: {text}")))
    local = any(local_tracks(g) for g in entries)
    fig, axes = panels_figure(2.2 if local else 1.5, 2 if local else 1, handles)
    ax, metric, shown = axes[0], None, []
    for g, colour in zip(entries, colours(len(entries))):
        runs, fit = g.finished(), group_fit(g)
        metric, span = conv(runs[0]).get("conv/metric"), median_span(runs, "nfe")
        order = fit.stat.centre if fit.measure == "conv/order" and fit.stat else None
        for r in runs:
            if metric in r.columns and r.x("nfe") is not None:
                ax.plot(r.x("nfe"), r.columns[metric], "o", color=colour, ms=3, alpha=0.4)
        c = geometric_curve(runs, metric, "nfe")
        if c is not None:
            ax.plot(c.x, c.mean, color=colour, lw=1.5)
            if order is not None and span:
                x = np.geomspace(*span, 50)
                ax.plot(x, value_at(c, span[0]) * (x / span[0]) ** -order, "k--", lw=1, gid=f"order {g.label}")
        if local and local_tracks(g):
            shown += draw_local(axes[1], g, [(t[:, 0], -t[:, 2]) for t in local_tracks(g)], colour, span, order)
    ax.set_yscale("log")
    ax.set(ylabel=plain(metric))
    for a in axes:
        a.set_xscale("log")
        a.set(xlabel="function evaluations of the sampler (NFE)")
        a.grid(True, alpha=0.3, which="both")
    if local:
        _robust_limits(axes[1], np.concatenate(shown))
        axes[1].set(ylabel="local order -d log err / d log NFE")
    fig.suptitle("error against NFE (log-log): dots the runs, line the geometric mean across seeds; dashed: the fitted "
                 "order\n(mean of the seeds' orders) over the points fitted" + ("; right: the local order, thick over "
                                                                                "the fit window" if local else ""),
                 fontsize=10)
    return fig


def geometric_curve(runs: Sequence[Run], metric: str | None, axis: str):
    values = [r.columns[metric] for r in runs if metric in r.columns]
    v = np.concatenate(values) if values else np.array([])
    v = v[np.isfinite(v) & (v > 0)]
    return curve(runs, metric, axis, float(v.min())) if v.size else None


def value_at(c, x: float) -> float:
    """The geometric-mean curve's value at x (log g interpolated between its points)."""
    return float(np.exp(np.interp(x, c.x, np.log(c.mean))))
