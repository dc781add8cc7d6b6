"""The order of a sampler, fitted: log error against log NFE over the step counts of `task.steps`,
after the points at the error's floor (the reference's own error, rounding, or a plateau) are
left out, with the verdict the summary's `convergence` holds (README, "Diffusion sampling")."""

from __future__ import annotations

import math

import numpy as np

from runner.task.convergence import MATERIAL, interval, pct, said, slope_fit

MIN_POINTS = 3     # fewer sampling runs leave no residual to judge a line by (the runs are deterministic
                   # curves under common random numbers, not noisy steps: 3 suffice where a step fit needs 8)
FLOOR_MARGIN = 10  # an additive floor E bends log error: the local order falls by E / e, 10% at e = 10 E
ROUNDING = 16      # the error of exact arithmetic, in eps x rms|x|: rk4 and dopri5 on the Gaussian target
                   # (closed-form reference) stop falling at 5-9e-15 = 14-24 eps rms|x| in float64


def error_floor(err: np.ndarray, level: np.ndarray, reference: np.ndarray) -> tuple[int, float | None, str | None]:
    """(k, floor level, what the floor is): the points k... are left out. A point is at the floor
    when its error is within FLOOR_MARGIN of what it cannot be told from: the reference's own
    error or the arithmetic's rounding (`level`, per point; `reference`: where the reference's
    is the larger), or the error's own plateau, where it stopped falling (a terminal run falling
    by less than MATERIAL: a learned score's error, which no step count removes, or a floor
    under-estimated). The floor is the terminal run of such points; a series flat throughout
    is left whole (the fit says stalled)."""
    n = len(err)
    if n == 0:
        return 0, None, None
    y = np.log(err)
    j = n - 1
    while j > 0 and y[-1] - y[j - 1] > math.log1p(-MATERIAL):
        j -= 1
    plateau = float(np.exp(np.median(y[j:]))) if 0 < j < n - 1 else 0.0
    at_floor = (err <= FLOOR_MARGIN * level) | (err <= FLOOR_MARGIN * plateau)
    k = n
    while k > 0 and at_floor[k - 1]:
        k -= 1
    if k == n:
        return n, None, None
    known = float(np.max(level[k:]))
    if plateau > known:
        return k, plateau, f"the plateau at {plateau:.3g} where the error stopped falling"
    return k, known, (f"the reference's own error ({known:.3g})" if reference[k:].any()
                      else f"rounding ({known:.3g})")


def order_verdict(nfe: np.ndarray, err: np.ndarray) -> dict[str, float | str | list | None]:
    """Least squares of log error on log NFE with a Newey-West standard error and a 95% t-interval
    (runner.task.convergence.slope_fit); order = -slope. The kind: `none` below MIN_POINTS points;
    `stalled` when the fitted error changes by less than MATERIAL across the window and every
    point lies within MATERIAL of the fit; `sublinear` (a power law in NFE) when it falls
    materially and the slope's interval lies below 0, `diverging` when it grows so; else `none`."""
    n = len(nfe)
    out: dict[str, float | str | list | None] = {
        "conv/kind": "none", "conv/model": None, "conv/rate": None, "conv/rate_ci": None, "conv/order": None,
        "conv/order_ci": None, "conv/exponent": None, "conv/exponent_ci": None, "conv/t0": None, "conv/se": None,
        "conv/change": None, "conv/r2": None, "conv/points": n,
        "conv/window": [float(nfe[0]), float(nfe[-1])] if n else None}
    where = f"NFE {nfe[0]:g}-{nfe[-1]:g} ({n} points)" if n else ""
    if n < MIN_POINTS or np.ptp(nfe) == 0:
        return {**out, **said("none", f"{len(set(nfe))} points of distinct NFE, {MIN_POINTS} needed", where)}
    x, y = np.log(nfe), np.log(err)
    fit = slope_fit(x, y)
    change = math.expm1(fit.slope * (x[-1] - x[0]))
    out.update({"conv/change": change, "conv/r2": fit.r2})
    spread = float(np.max(np.abs(y - fit.intercept - fit.slope * x)))
    order = "order " + interval(-fit.hi, -fit.lo, -fit.slope)
    if abs(change) < MATERIAL:
        if spread < math.log1p(MATERIAL):
            return {**out, **said("stalled", f"error {pct(change)} ({order})", where)}
        return {**out, **said("none", f"noise-dominated: error {pct(change)}, points up to "
                                      f"{math.expm1(spread):.1%} off the fit", where)}
    if not (fit.hi < 0 or fit.lo > 0):
        return {**out, **said("none", f"no significant trend: {order}, error {pct(change)}", where)}
    out.update({"conv/kind": "sublinear" if fit.slope < 0 else "diverging", "conv/model": "power", "conv/t0": 0.0,
                "conv/order": -fit.slope, "conv/order_ci": [-fit.hi, -fit.lo], "conv/exponent": fit.slope,
                "conv/exponent_ci": [fit.lo, fit.hi], "conv/se": fit.se})
    return {**out, **said(out["conv/kind"], f"{order} in NFE, error {pct(change)}", where)}


def local_orders(nfe: np.ndarray, err: np.ndarray) -> list[list[float | None]]:
    """[NFE, None, local exponent] between neighbouring step counts (at their geometric mean): where
    the order settles. The middle entry, a per-step rate, has no meaning against NFE."""
    return [[float(math.sqrt(a * b)), None, float(math.log(f / e) / math.log(b / a))]
            for a, b, e, f in zip(nfe[:-1], nfe[1:], err[:-1], err[1:]) if b > a][:64]
