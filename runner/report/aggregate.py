"""Statistics across seeds for `runner-report`: 95% Student-t intervals of the mean, and curves
of a group of runs on one grid.

The interval is mean +- t(0.975, n-1) s / sqrt(n). Runs are aligned on their logged steps: the
grid is the union of the steps the runs logged (thinned evenly to at most MAX_POINTS), each run
interpolated linearly on it only inside its own range, so a run that stopped early leaves the mean
where it stopped. Against time and gradient evaluations, the mean at a step is drawn at the mean
time (evaluations) the runs took to reach it: averaging runs at equal times instead would mix
runs at different steps, and a slow start of one run would jump the mean. Metrics drawn on a log
axis are averaged as log10 (a geometric mean, band multiplicative), zeros lifted to the smallest
positive value seen, so neither the mean nor the band can reach zero or below. A band needs three
runs (MIN_BAND): a t-interval on one degree of freedom is 12.7 times the half-difference of two
values, wider than the data, so where fewer runs are left there is no band and the report draws
the runs themselves (`tracks`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from runner.report.results import Run

MAX_POINTS = 500  # grid points per curve: more than a figure a few inches wide can show
MIN_BAND = 3  # runs needed for a t-band (n = 2: t = 12.7; n = 1: no spread at all)
LOG_HINTS = ("norm", "dist", "gap", "subopt", "loss", "w2", "mmd", "err")  # quantities that go to zero
NOT_CURVES = ("step", "time_s", "train/grad_evals", "diff/nfe", "diff/steps")
AXES = {"step": "step", "time": "training time (s)", "grad_evals": "gradient evaluations",
        "nfe": "function evaluations of the sampler (NFE)"}


@dataclass
class Curve:
    x: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: np.ndarray


def t_interval(a: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, 95% t-interval half-width and count of the finite values along `axis` (NaN when n < 2)."""
    from scipy.stats import t  # imported on use: scipy.stats takes a while to import

    a = np.asarray(a, dtype=float)
    ok = np.isfinite(a)
    n = ok.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, a, 0.0).sum(axis=axis) / n
        dev = np.where(ok, a - np.expand_dims(mean, axis), 0.0)
        sem = np.sqrt((dev ** 2).sum(axis=axis) / (n - 1) / n)
        half = np.where(n >= 2, t.ppf(0.975, np.maximum(n - 1, 1)) * sem, np.nan)
    return mean, half, n


def band(a: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, band ends and count along `axis`: the 95% t-interval of the mean where n >= MIN_BAND,
    NaN (no band) where fewer values are finite."""
    mean, half, n = t_interval(a, axis)
    half = np.where(n >= MIN_BAND, half, np.nan)
    return mean, mean - half, mean + half, n


def stat(values: Iterable[float | None]) -> tuple[float, float, int]:
    """(mean, half-width, n) of the finite values among `values`."""
    a = np.array([v for v in values if v is not None], dtype=float)
    mean, half, n = t_interval(a) if a.size else (np.nan, np.nan, 0)
    return float(mean), float(half), int(n)


def never_negative(runs: Sequence[Run], metric: str) -> bool:
    """Whether every finite value of `metric` in `runs` is >= 0 (an entropy, a return in [0, 1], a norm)."""
    values = [v[np.isfinite(v)] for r in runs if (v := r.columns.get(metric)) is not None]
    return any(v.size for v in values) and all((v >= 0).all() for v in values)


def y_scale(runs: Sequence[Run], metric: str) -> tuple[str, float | None]:
    """How to draw `metric`: ("log", smallest positive value) for values >= 0 that span two decades
    (one for gaps, norms and losses by name); ("symlog", linear range) for signed values whose
    largest is 1000 times their median; ("linear", None) otherwise."""
    values = [r.columns[metric] for r in runs if metric in r.columns]
    v = np.concatenate(values) if values else np.array([])
    v = v[np.isfinite(v)]
    size = np.abs(v[v != 0])
    if not size.size:
        return "linear", None
    span = size.max() / size.min()
    if v.min() >= 0:
        named = any(h in metric.rsplit("/", 1)[-1] for h in LOG_HINTS)
        return ("log", float(size.min())) if span >= 100 or (named and span >= 10) else ("linear", None)
    middle = float(np.median(size))
    return ("symlog", middle) if size.max() >= 1000 * middle else ("linear", None)


def tracks(runs: Sequence[Run], metric: str, axis: str, floor: float | None = None) -> list[tuple[np.ndarray, ...]]:
    """(steps, values, x values) of each run that logged `metric` against `axis`, finite records only;
    with `floor`, the values as log10 of max(value, floor)."""
    out = []
    for run in runs:
        step, y, x = run.columns.get("step"), run.columns.get(metric), run.x(axis)
        if step is None or y is None or x is None:
            continue
        ok = np.isfinite(step) & np.isfinite(y) & np.isfinite(x)
        if ok.any():
            out.append((step[ok], np.log10(np.maximum(y[ok], floor)) if floor else y[ok], x[ok]))
    return out


def curve(runs: Sequence[Run], metric: str, axis: str, floor: float | None) -> Curve | None:
    """Mean and 95% band of `metric` across `runs` at each step of the common step grid, placed at
    the step, or at the mean over those runs of their time or gradient evaluations there; with
    `floor` (a log axis) in log10: geometric mean, band from the log10 values, all above zero."""
    found = tracks(runs, metric, axis, floor)
    if not found:
        return None
    grid = np.unique(np.concatenate([s for s, _, _ in found]))
    grid = grid[np.unique(np.linspace(0, len(grid) - 1, min(len(grid), MAX_POINTS)).round().astype(int))]
    values = np.vstack([np.interp(grid, s, y, left=np.nan, right=np.nan) for s, y, _ in found])
    mean, lo, hi, n = band(values)
    if axis == "step":
        at = grid.astype(float)
    else:
        xs = np.vstack([np.interp(grid, s, x, left=np.nan, right=np.nan) for s, _, x in found])
        at = t_interval(np.where(np.isfinite(values), xs, np.nan))[0]
    if floor:
        mean, lo, hi = 10 ** mean, 10 ** lo, 10 ** hi
    return Curve(at, mean, lo, hi, n)


def median_curve(tracks: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The median of several (x, y) curves on the union of their x values, each curve interpolated
    inside its own range only (a run that stopped early leaves the median where it stopped)."""
    tracks = [(x[ok], y[ok]) for x, y in tracks for ok in [np.isfinite(x) & np.isfinite(y)] if ok.any()]
    if not tracks:
        return np.array([]), np.array([])
    grid = np.unique(np.concatenate([x for x, _ in tracks]))
    values = np.vstack([np.interp(grid, x, y, left=np.nan, right=np.nan) for x, y in tracks])
    return grid, np.array([np.median(c[np.isfinite(c)]) for c in values.T])


def curve_metrics(runs: Sequence[Run], primary: str | None) -> list[str]:
    """Metrics worth a figure, the primary first: logged, and changing in at least one run."""
    keys = dict.fromkeys(k for r in runs for k in r.columns
                         if k not in NOT_CURVES and not k.startswith("time/"))
    moving = [k for k in keys if any(_moves(r.columns.get(k)) for r in runs)]
    return sorted(moving, key=lambda k: k != primary)


def _moves(v: np.ndarray | None) -> bool:
    v = v[np.isfinite(v)] if v is not None else np.array([])
    return v.size > 1 and bool(v.max() > v.min())
