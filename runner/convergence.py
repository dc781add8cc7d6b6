"""The convergence fit (README, "The run folder", **Convergence fit**): on the tail of the
primary metric g(t), fit `log g = a + b t` (linear convergence, rate = exp(b) per step) and
`log g = a + p log t` (sublinear, g ~ t^p), report both with their R^2, name the better one, and
record the first step at which g fell below each threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def fit_tail(series: Sequence[tuple[int, float]], tail: float = 0.5, thresholds: Sequence[float] = (),
             floor: float = 1e-12) -> dict[str, float | str | None]:
    """`series` is [(step, g)]. The fit uses the last `tail` fraction of the points that are
    above the rounding floor (g > floor * max g): once a method has reached machine precision,
    the noise at the floor says nothing about its rate."""
    out: dict[str, float | str | None] = {f"conv/steps_to_{eps:g}": _first_below(series, eps) for eps in thresholds}
    top = max((g for _, g in series if math.isfinite(g)), default=0.0)
    pts = [(t, g) for t, g in series if t > 0 and g > floor * top and math.isfinite(g)]
    pts = pts[len(pts) - max(3, math.ceil(tail * len(pts))):] if len(pts) >= 3 else []
    if not pts:
        return {"conv/kind": None, "conv/rate": None, "conv/exponent": None, "conv/r2": None,
                "conv/r2_linear": None, "conv/r2_sublinear": None, "conv/points": len(pts), **out}
    t = np.array([p[0] for p in pts], dtype=float)
    log_g = np.log([p[1] for p in pts])
    slope_lin, r2_lin = _line(t, log_g)
    slope_pow, r2_pow = _line(np.log(t), log_g)
    linear = r2_lin >= r2_pow
    return {
        "conv/kind": "linear" if linear else "sublinear",
        "conv/rate": math.exp(slope_lin),
        "conv/exponent": slope_pow,
        "conv/r2": max(r2_lin, r2_pow),
        "conv/r2_linear": r2_lin,
        "conv/r2_sublinear": r2_pow,
        "conv/points": len(pts),
        **out,
    }


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of y on x and the R^2 of that line (1.0 when y is constant)."""
    if np.ptp(x) == 0:
        return 0.0, 0.0
    slope, intercept = np.polyfit(x, y, 1)
    ss_res = float(np.sum((y - (slope * x + intercept)) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return float(slope), 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0


def _first_below(series: Sequence[tuple[int, float]], eps: float) -> int | None:
    return next((t for t, g in series if g < eps), None)
