"""Numbers as the report writes them: to the precision that their interval supports, and a set of
per-seed values as mean and interval (three or more), their two values (two), or the value (one)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from runner.report.aggregate import stat, t_interval


def fmt(mean: float, half: float = math.nan) -> str:
    """`mean ± half`, the mean given to the precision that the interval supports."""
    if not math.isfinite(mean):
        return "-"
    if not math.isfinite(half) or half == 0:
        return f"{mean:.6g}"
    digits = 1 - math.floor(math.log10(half))  # decimals that show two significant digits of the half-width
    if 1e-4 <= abs(mean) < 1e6 and digits <= 10:
        return f"{mean:.{max(digits, 0)}f} ± {half:.{max(digits, 0)}f}"
    if half < 1e-7 * abs(mean):  # seeds agree to rounding: seven digits of the mean
        return f"{mean:.7g} ± {half:.1e}"
    return f"{mean:.3g} ± {half:.2g}"


def number(v: float | None, width: float = math.nan) -> str:
    """v to the precision that an interval `width` wide supports (two digits of it); seven digits
    when the interval is below 1e-7 of v (seeds that agree to rounding)."""
    if v is None or not math.isfinite(v):
        return "-"
    if not math.isfinite(width) or width < 0:
        return f"{v:.6g}"
    if width <= 1e-7 * abs(v):
        return f"{v:.7g}"
    digits = 1 - math.floor(math.log10(width))
    text = f"{v:.{max(digits, 0)}f}" if 1e-4 <= abs(v) < 1e6 and digits <= 10 else f"{v:.3g}"
    return text if v == 0 or float(text) != 0 else significant(v, 2)  # a value far below the spread: not "-0.0"


def significant(v: float, digits: int) -> str:
    """v to `digits` significant digits, trailing zeros kept (0.10, 170, 4.0e-16)."""
    if v == 0 or not math.isfinite(v):
        return f"{v:g}"
    if 1e-4 <= abs(v) < 1e6:
        return f"{v:.{max(0, digits - 1 - math.floor(math.log10(abs(v))))}f}"
    return f"{v:.{digits - 1}e}"


def mean_ci(values: Iterable[float | None], log: bool = False) -> str:
    """The finite values across seeds. Three or more: `mean ± 95% half-width`, or with `log` (a
    positive quantity drawn on a log axis) the geometric mean `centre [lo, hi]`, exp(mean ln v +-
    t s / sqrt(n)), never negative. Two: `a to b`, since a t-interval on one degree of freedom
    (t = 12.7) is wider than the data. One: the value."""
    a = np.array([v for v in values if v is not None], dtype=float)
    a = a[np.isfinite(a)]
    if a.size == 2 and a[0] != a[1]:
        return f"{number(a.min(), np.ptp(a))} to {number(a.max(), np.ptp(a))}"
    if log and a.size >= 3 and (a > 0).all():
        mean, half, _ = t_interval(np.log(a))
        lo, hi = math.exp(mean - half), math.exp(mean + half)
        if half <= 1e-7:  # seeds that agree to rounding
            return f"{math.exp(mean):.7g} (all {a.size} seeds)"
        # significant digits by the interval's relative width: its low end, decades below the high
        # one, keeps digits of its own rather than rounding to 0.0
        digits = min(7, max(2, 1 - math.floor(math.log10(math.expm1(2 * half)))))
        return f"{significant(math.exp(mean), digits)} [{significant(lo, digits)}, {significant(hi, digits)}]"
    mean, half, _ = stat(a)
    return fmt(mean, half if a.size > 2 else math.nan)
