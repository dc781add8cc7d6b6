"""The convergence verdict (README, "The run folder", **Convergence verdict**): what the tail of
the primary metric g(t) supports, with its uncertainty, its window and its points.

On the last `tail` fraction of the points above the rounding floor, log g is fitted three ways:
`a + b t` (exponential: rate e^b per step), `a + p log t` (power law t^p) and `a + p log(t - t0)`
(a power law after a plateau that ended near t0, t0 chosen by least squares). The Bayesian
information criterion (Schwarz 1978) picks the law, so the extra parameter t0 must earn its place.
Slopes carry Newey-West standard errors (Newey & West 1987, Bartlett kernel, lag chosen by
Andrews' 1991 AR(1) rule): residuals of a fitted curve are serially correlated, and the plain
OLS error would be too small. Intervals are 95%: Student-t on n - 2 degrees of freedom, widened
by Kiefer & Vogelsang's (2005) fixed-b critical value for the lag used (on pure noise this holds
false trends to 5% at 8 to 100 points, against 12% at 8 points without it). The kind is then decided in this order:

- `none`: fewer than MIN_POINTS points;
- `stalled`: the fitted curve changes by less than MATERIAL across the window and g stays within
  MATERIAL of it (e.g. exact PG at a tiny step size);
- `cycling`: no material or significant trend (or one smaller than twice the residual noise), but g swings by more than MATERIAL smoothly and back and forth
  (mean crossings >= 4, lag-1 autocorrelation of the detrended values >= 0.5), as GDA orbits do;
  `none` when the swings are irregular (noise-dominated);
- `diverging`: g grows materially and significantly (exponential or power law by BIC);
- `linear` / `sublinear`: g falls materially and significantly, by the law BIC picks.

A plateau at the window's start (g within MATERIAL of its first value, moving at less than a
tenth of its later pace) is cut off the window and reported: the law is fitted after it.

Rounding floors are left out first: a terminal run of >= FLOOR_POINTS points with no significant
trend, lying below sqrt(eps) x max g (eps of the precision computed in: float64, float32, bf16),
is the floor, and the points within two decades above it go too (rounding moves them by 1% or
more); so does anything below `floor` x max g. A fit whose two halves, fitted apart, have disjoint
intervals and slopes 10% apart is flagged "not settled" (`conv/halves`): the regime is still changing. `local()` gives the rate and exponent over a
sliding window along the whole series, to show where the asymptotic regime starts.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_POINTS = 8      # fewer points cannot separate a law from its noise (a 3-point fit has R² ~ 1 by construction)
MATERIAL = 0.05     # a relative change of g below 5% across the window is no material progress
FLOOR_POINTS = 5    # a floor is recognised only when this many points sit on it
LOCAL_ENTRIES = 64  # sliding-window estimates kept in the summary
# machine epsilon of each `precision` (summary.json), for the rounding floor; bf16 keeps 8 significant bits
EPS = {"fp64": float(np.finfo(np.float64).eps), "fp32": float(np.finfo(np.float32).eps), "bf16": 2.0 ** -7}


@dataclass(frozen=True)
class Slope:
    """Least-squares line y = intercept + slope x, with the slope's Newey-West standard error and
    its 95% t-interval; rss is the residual sum of squares."""
    slope: float
    intercept: float
    se: float
    lo: float
    hi: float
    n: int
    rss: float
    r2: float


def slope_fit(x: np.ndarray, y: np.ndarray) -> Slope:
    """Fit y on x (n >= 3, x not constant) by least squares; the slope's error is heteroskedasticity-
    and autocorrelation-consistent (Newey-West, Bartlett weights)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    xc = x - x.mean()
    sxx = float(xc @ xc)
    slope = float(xc @ (y - y.mean())) / sxx
    intercept = float(y.mean() - slope * x.mean())
    e = y - intercept - slope * x
    u = xc * e
    lag = bandwidth(u)
    s = float(u @ u) + 2 * sum((1 - j / (lag + 1)) * float(u[j:] @ u[:-j]) for j in range(1, lag + 1))
    se = math.sqrt(max(s, 0.0) * n / (n - 2)) / sxx  # degrees-of-freedom correction for the two fitted parameters
    b = (lag + 1) / n  # Kiefer & Vogelsang's (2005) fixed-b critical value for the Bartlett kernel, on t(n - 2)
    half = t_quantile(n - 2) * (1.96 + 2.9694 * b + 0.4160 * b**2 - 0.5324 * b**3) / 1.96 * se
    rss = float(e @ e)
    tss = float(((y - y.mean()) ** 2).sum())
    return Slope(slope, intercept, se, slope - half, slope + half, n, rss, 1 - rss / tss if tss > 0 else 1.0)


@functools.lru_cache(maxsize=None)
def t_quantile(df: int) -> float:
    """Student-t's 97.5% quantile on `df` degrees of freedom, once per df: scipy's ppf costs ~0.3 ms a
    call, and one verdict fits dozens of windows (a summary's fit was ~20 ms of ppf).
    `stdtrit` is what scipy.stats.t.ppf computes it with (the same float), without importing
    scipy.stats (about 0.5 s of every run's end, against 0.15 s for scipy.special)."""
    from scipy.special import stdtrit  # imported on use, as scipy.special takes a while too

    return float(stdtrit(df, 0.975))


def bandwidth(u: np.ndarray) -> int:
    """Newey-West lag by Andrews' (1991) AR(1) plug-in for the Bartlett kernel:
    1.1447 (alpha n)^(1/3), alpha = (2 rho / (1 - rho^2))^2, rho the lag-1 autocorrelation of u.
    Smooth residuals (rho near 1, the misfit of a law to a curve) get a long lag and a wide interval."""
    n = len(u)
    denom = float(u[:-1] @ u[:-1])
    rho = min(max(float(u[1:] @ u[:-1]) / denom, 0.0), 0.999) if denom > 0 else 0.0
    alpha = (2 * rho / (1 - rho**2)) ** 2
    return min(n - 1, math.floor(1.1447 * (alpha * n) ** (1 / 3)))


def fit_tail(series: Sequence[tuple[int, float]], tail: float = 0.5, thresholds: Sequence[float] = (),
             floor: float = 1e-12, eps: float = EPS["fp32"]) -> dict:
    """The verdict on `series` = [(step, g)] as `conv/*` keys (README lists them), with the first
    logged step below each threshold and the logged step before it."""
    out = {"conv/x": "step", **reached(series, thresholds)}
    pts = [(t, g) for t, g in series if t > 0 and math.isfinite(g) and g > 0]
    t = np.array([p[0] for p in pts], float)
    y = np.log([p[1] for p in pts]) if pts else np.array([])
    keep = y > math.log(floor) + y.max() if len(y) else np.array([], bool)
    out["conv/floor"], out["conv/floor_level"] = None, None
    if not keep.all():  # below metrics.fit_floor x max g: float64 rounding at the latest
        out["conv/floor"], out["conv/floor_level"] = int(t[~keep][0]), math.exp(math.log(floor) + y.max())
    t, y = t[keep], y[keep]
    floor_at = floor_start(t, y, eps)
    if floor_at is not None:
        level = float(np.median(y[floor_at:]))
        out["conv/floor"], out["conv/floor_level"] = int(t[floor_at]), math.exp(level)
        clear = y[:floor_at] > level + math.log(100)  # within two decades of the floor, rounding moves g by 1% or more
        t, y = t[:floor_at][clear], y[:floor_at][clear]
    out["conv/local"] = local(t, y)
    k = max(len(t) - max(MIN_POINTS, math.ceil(tail * len(t))), 0)
    t, y = t[k:], y[k:]
    j = plateau_end(t, y)
    out["conv/plateau"] = [int(t[0]), int(t[j])] if j else None
    t, y = t[j:], y[j:]
    verdict = judge(t, y)
    if out["conv/plateau"]:
        verdict["conv/reason"] += f", after a plateau over steps {out['conv/plateau'][0]}-{out['conv/plateau'][1]}"
    if floor_at is not None:
        verdict["conv/reason"] += f"; a floor at {out['conv/floor_level']:.3g} (from step {out['conv/floor']}) and the two decades above it left out"
    elif out["conv/floor"] is not None:
        verdict["conv/reason"] += f"; points below {out['conv/floor_level']:.3g} (metrics.fit_floor x max, from step {out['conv/floor']}) left out"
    return {**out, **verdict}


def judge(t: np.ndarray, y: np.ndarray) -> dict:
    """The kind and its law on the window (steps t, log values y)."""
    n = len(t)
    out = {"conv/kind": "none", "conv/model": None, "conv/rate": None, "conv/rate_ci": None, "conv/exponent": None,
           "conv/exponent_ci": None, "conv/t0": None, "conv/se": None, "conv/change": None, "conv/r2": None,
           "conv/points": n, "conv/window": [int(t[0]), int(t[-1])] if n else None}
    where = f"steps {int(t[0])}-{int(t[-1])} ({n} points)" if n else "no points"
    if n < MIN_POINTS or np.ptp(t) == 0:
        return {**out, **said("none", f"{n} points, {MIN_POINTS} needed", "")}
    fits = {"exponential": (slope_fit(t, y), 0.0), "power": (slope_fit(np.log(t), y), 0.0)}
    fits["shifted_power"] = shifted_power(t, y)
    law = min(fits, key=lambda m: bic(fits[m][0], 3 if m == "shifted_power" else 2))
    fit, t0 = fits[law]
    x = t if law == "exponential" else np.log(t - t0)
    change = math.expm1(fit.slope * (x[-1] - x[0]))
    out.update({"conv/change": change, "conv/r2": fit.r2})
    trend = fits["exponential"][0]
    noise = math.sqrt(fit.rss / (n - 2))
    flat = abs(change) < MATERIAL or trend.lo <= 0 <= trend.hi or abs(math.log1p(change)) < 2 * noise
    if flat:
        drift = math.expm1(trend.slope * (t[-1] - t[0]))
        swing = float(np.ptp(y - trend.slope * t))
        out["conv/change"] = drift
        if periodic(y - trend.slope * t):
            return {**out, **said("cycling", f"periodic swings x{math.exp(swing):.4g}, trend {pct(drift)}", where)}
        if abs(drift) < MATERIAL and swing < math.log1p(MATERIAL):
            return {**out, **said("stalled", pct(drift), where)}
        return {**out, **said("none", f"noise-dominated: swings x{math.exp(swing):.3g}, trend {pct(drift)}", where)}
    if change > 0:  # growth: the exponential or the plain power law, whichever BIC prefers
        law = "exponential" if bic(fits["exponential"][0], 2) <= bic(fits["power"][0], 2) else "power"
        fit, t0 = fits[law]
        x = t if law == "exponential" else np.log(t)
        change = out["conv/change"] = math.expm1(fit.slope * (x[-1] - x[0]))
    out.update({"conv/kind": "diverging" if change > 0 else "linear" if law == "exponential" else "sublinear",
                "conv/model": law, "conv/se": fit.se})
    if law == "exponential":
        out.update({"conv/rate": math.exp(fit.slope), "conv/rate_ci": [math.exp(fit.lo), math.exp(fit.hi)]})
        law_text = "rate " + interval(*out["conv/rate_ci"], math.exp(fit.slope), least=6) + "/step"
    else:
        out.update({"conv/exponent": fit.slope, "conv/exponent_ci": [fit.lo, fit.hi], "conv/t0": t0})
        law_text = "exponent " + interval(fit.lo, fit.hi, fit.slope) + (f" in t - {t0:.4g}" if t0 else "")
    halves = settled(x, y)
    if halves and law == "exponential":
        halves = [math.exp(h) for h in halves]
    out["conv/halves"] = halves
    if halves:
        law_text += (f"; not settled: {'rate' if law == 'exponential' else 'exponent'} {halves[0]:.6g} on the"
                     f" first half, {halves[1]:.6g} on the second")
    return {**out, **said(out["conv/kind"], f"{law_text}, g {pct(change)}", where)}


def settled(x: np.ndarray, y: np.ndarray) -> list[float] | None:
    """None when the law's slope is one across the window; else the slopes of its two halves,
    fitted apart, when their 95% intervals are disjoint and they differ by more than 10% (a
    Chow-type check: the regime is still changing)."""
    h = len(x) // 2
    if h < 4:
        return None
    a, b = slope_fit(x[:h], y[:h]), slope_fit(x[h:], y[h:])
    apart = (a.hi < b.lo or b.hi < a.lo) and abs(a.slope - b.slope) > 0.1 * max(abs(a.slope), abs(b.slope))
    return [a.slope, b.slope] if apart else None


def interval(lo: float, hi: float, value: float, least: int = 3) -> str:
    """`value [lo, hi]` with the significant digits that show two of the interval's width (at least `least`)."""
    width = hi - lo
    if value and width <= 1e-8 * abs(value):  # exact arithmetic: the interval is rounding
        return f"{value:.9g} [width < 1e-8 of it]"
    need = math.ceil(math.log10(abs(value) / width)) + 2 if value else least
    if need > 9:
        return f"{value:.9g} [width < 1e-8 of it]"
    digits = max(least, need)
    return f"{value:.{digits}g} [{lo:.{digits}g}, {hi:.{digits}g}]"


def pct(change: float) -> str:
    """A relative change as a signed percentage, or as a factor once g has halved or grown 1.5-fold."""
    return f"{change:+.1%}" if -0.5 < change < 0.5 else f"x{1 + change:.3g}"


def said(kind: str, law: str, where: str) -> dict:
    """conv/kind, conv/law (the law or what was seen, with its interval) and conv/reason, the line a user reads."""
    return {"conv/kind": kind, "conv/law": law, "conv/reason": f"{kind}: {law}" + (f" over {where}" if where else "")}


def plateau_end(t: np.ndarray, y: np.ndarray) -> int:
    """Index of the last point of a plateau at the window's start (0 if none): g stays within
    MATERIAL of its first value over at least four points, falling or growing there at less than a
    tenth of its average pace over the rest of the window, and MIN_POINTS remain after it."""
    if len(y) < MIN_POINTS:
        return 0
    moved = np.flatnonzero(np.abs(y - y[0]) > math.log1p(MATERIAL))
    if not len(moved) or moved[0] < 4 or len(y) - moved[0] + 1 < MIN_POINTS:
        return 0
    j = int(moved[0]) - 1
    pace_flat = abs(y[j] - y[0]) / (t[j] - t[0])
    pace_after = abs(y[-1] - y[j]) / (t[-1] - t[j])
    return j if pace_flat < pace_after / 10 else 0


def bic(fit: Slope, params: int) -> float:
    """Schwarz's criterion for a Gaussian fit; the residual variance is floored at (1e-9)^2 so
    exact series (rounding-level residuals) compare by their parameter count."""
    return fit.n * math.log(fit.rss / fit.n + 1e-18) + params * math.log(fit.n)


def shifted_power(t: np.ndarray, y: np.ndarray) -> tuple[Slope, float]:
    """The power law in t - t0 with the least residual, t0 searched over [0, t[0]) on a log grid
    of the distance t[0] - t0 (from a tenth of the first gap to t[0])."""
    gap = float(np.min(np.diff(t))) if len(t) > 1 else 1.0
    shifts = t[0] - np.geomspace(min(gap / 10, t[0]), t[0], 60)
    best = min(((slope_fit(np.log(t - s), y), float(s)) for s in np.maximum(shifts, 0.0)), key=lambda f: f[0].rss)
    return best


def floor_start(t: np.ndarray, y: np.ndarray, eps: float) -> int | None:
    """Index where a terminal rounding floor begins, or None: the earliest start of a terminal run of
    at least FLOOR_POINTS points with no significant downward trend, lying below sqrt(eps) x max g.
    Starts are tried on a grid of at most 64 (a floor of noise shows a chance trend in some runs of
    points, so the scan does not stop at the first one)."""
    n, start = len(y), None
    if n < MIN_POINTS + FLOOR_POINTS:
        return None
    level = y.max() + 0.5 * math.log(eps)
    for k in np.unique(np.linspace(n - FLOOR_POINTS, MIN_POINTS, 64).round().astype(int))[::-1]:
        if np.median(y[k:]) > level or np.ptp(t[k:]) == 0:
            break
        if slope_fit(t[k:], y[k:]).hi >= 0:  # not significantly falling
            start = int(k)
    return start


def periodic(r: np.ndarray) -> bool:
    """Fisher's (1929) g test: the largest periodogram ordinate of the detrended values holds so
    much of the total that white noise would give it with probability below 1% (first term of
    Fisher's series, conservative), at two or more cycles per window, with swings above rounding."""
    r = r - r.mean()
    if np.ptp(r) < 1e-6:
        return False
    power = np.abs(np.fft.rfft(r)[1:(len(r) - 1) // 2 + 1]) ** 2
    m = len(power)
    if m < 3 or power.sum() == 0:
        return False
    k = int(np.argmax(power))
    g = power[k] / power.sum()
    return k + 1 >= 2 and m * (1 - g) ** (m - 1) < 0.01


def local(t: np.ndarray, y: np.ndarray) -> list[list[float]]:
    """[step, rate per step, exponent] fitted over a sliding window of a tenth of the points (at
    least five), at up to LOCAL_ENTRIES positions along the series."""
    n = len(t)
    w = max(5, n // 10)
    if n < w or np.ptp(t) == 0:
        return []
    out = []
    for i in np.unique(np.linspace(0, n - w, min(LOCAL_ENTRIES, n - w + 1)).round().astype(int)):
        tt, yy = t[i:i + w], y[i:i + w]
        b = np.polyfit(tt, yy, 1)[0]
        p = np.polyfit(np.log(tt), yy, 1)[0]
        out.append([float(np.exp(np.log(tt).mean())), float(np.exp(b)), float(p)])
    return out


def reached(series: Sequence[tuple[int, float]], thresholds: Sequence[float]) -> dict:
    """conv/steps_to_<eps>: the first logged step with g < eps, conv/steps_to_<eps>_after: the
    logged step before it (the crossing lies in between); conv/resolution: the median gap between
    logged steps, the resolution of both."""
    steps = [t for t, _ in series]
    out: dict = {"conv/resolution": float(np.median(np.diff(steps))) if len(steps) > 1 else None}
    for eps in thresholds:
        i = next((i for i, (_, g) in enumerate(series) if g < eps), None)
        out[f"conv/steps_to_{eps:g}"] = None if i is None else series[i][0]
        out[f"conv/steps_to_{eps:g}_after"] = None if i is None or i == 0 else series[i - 1][0]
    return out
