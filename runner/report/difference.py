"""The difference (or ratio) of two groups' samples of one summary (runner.report.compare says which
and why that scale): the 95% Welch t-interval, Welch's t-test and the Mann-Whitney rank test; and
the report's table of groups against a baseline.

Welch: d = mean(y) - mean(x), se = sqrt(s_x^2/n_x + s_y^2/n_y), df = se^4 / ((s_x^2/n_x)^2/(n_x-1)
+ (s_y^2/n_y)^2/(n_y-1)), interval d +- t(0.975, df) se, p = 2 P(T_df > |d/se|). On a log scale
the same on the logarithms, the ends exponentiated: a ratio of geometric means.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from runner.report.compare import Sample, Stat, on_log_scale, rate_measure, sample
from runner.report.fit import NAMES
from runner.report.html import Table
from runner.report.results import Group
from runner.report.text import mean_ci, number


@dataclass
class Welch:
    effect: float        # difference, or ratio on a log scale
    lo: float
    hi: float
    p: float
    df: float


def welch(x: np.ndarray, y: np.ndarray, log: bool = False) -> Welch | None:
    """y against x; None when a side has fewer than 2 values or neither side varies."""
    from scipy.stats import t  # imported on use: scipy.stats takes a while to import

    x, y = (np.log(x), np.log(y)) if log else (np.asarray(x, float), np.asarray(y, float))
    if x.size < 2 or y.size < 2:
        return None
    vx, vy = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(vx + vy)
    if se == 0:
        return None
    d = float(y.mean() - x.mean())
    df = (vx + vy) ** 2 / (vx ** 2 / (x.size - 1) + vy ** 2 / (y.size - 1))
    half = float(t.ppf(0.975, df)) * se
    back = math.exp if log else (lambda v: v)
    return Welch(back(d), back(d - half), back(d + half), float(2 * t.sf(abs(d) / se, df)), df)


def rank_p(x: Sample, y: Sample) -> float | None:
    """Two-sided Mann-Whitney p of y against x, censored runs ranked worst; None without data."""
    from scipy.stats import mannwhitneyu

    a = np.concatenate([x.values, np.full(x.censored, x.worst)])
    b = np.concatenate([y.values, np.full(y.censored, y.worst)])
    if not a.size or not b.size or np.unique(np.concatenate([a, b])).size < 2:
        return None
    return float(mannwhitneyu(b, a, alternative="two-sided").pvalue)


def why_no_interval(x: Sample, y: Sample, names: tuple[str, str]) -> str:
    """Why the t-interval is left out, or '' when it can be given."""
    censored = [f"{s.censored}/{s.censored + s.values.size} of {names[i]}" for i, s in enumerate((x, y)) if s.censored]
    if censored:
        return f"censored (never reached, or non-finite): {', '.join(censored)}; no t-interval, rank test counts them worst"
    few = [f"{names[i]} has {s.values.size}" for i, s in enumerate((x, y)) if s.values.size < 2]
    if few:
        return f"no interval: {', '.join(few)} run{'s' * (len(few) > 1)} with a value (a variance needs 2)"
    return ""


def comparison_table(baseline: Group, others: Sequence[Group], stat: Stat,
                     primary: str | None, log_metrics: Collection[str] = ()) -> Table:
    """One row per group of `others` against `baseline` on `stat` (resolved: it names its metric)."""
    measure = rate_measure([baseline, *others]) if stat.kind == "rate" else None
    log = on_log_scale(stat, measure, log_metrics)
    base = sample(baseline, stat, measure, log)
    rows = [row(baseline, base, g, sample(g, stat, measure, log), log) for g in others]
    what = stat.text(primary) if stat.kind != "rate" or not measure else f"fitted {NAMES[measure]} of {primary}"
    effect = "ratio (group / baseline)" if log else "difference (group - baseline)"
    scale = "ratio of geometric means, Welch t on the logarithms" if log else "difference of means, Welch t"
    return Table(f"{what}: each group against {baseline.label}",
                 f"{scale}; value: {'geometric ' * log}mean over the group's completed and diverged runs with a "
                 "value ((k/n reached): the other runs never did); n counts censored runs; 95% Welch t-interval; p: Welch's t-test and the "
                 "Mann-Whitney rank test, two-sided",
                 ["group", "n", "value", "n baseline", "value baseline", effect, "95% CI", "Welch p", "rank p", "note"],
                 rows)


def row(base_group: Group, base: Sample, group: Group, s: Sample, log: bool) -> list[str]:
    w = welch(base.values, s.values, log) if not (base.censored or s.censored) else None
    why = why_no_interval(base, s, ("the baseline", "the group"))
    if not why and w is None:
        why = "the runs of each side agree exactly: no spread, no interval"
    notes = [why] + [f"{x.missing} run(s) of {name} without a value{f' ({x.why_missing[0]})' if x.why_missing else ''}"
                     for x, name in ((base, "the baseline"), (s, "the group")) if x.missing]
    effect, ci = "-", "-"
    if w is not None:
        width = w.hi - w.lo
        effect, ci = number(w.effect, width), f"[{number(w.lo, width)}, {number(w.hi, width)}]"
    elif base.values.size and s.values.size and not (base.censored or s.censored):  # a point estimate only
        effect = number(_centre(s.values, log) / _centre(base.values, log) if log
                        else _centre(s.values, log) - _centre(base.values, log))
    return [group.label, _n(s), _value(s, log), _n(base), _value(base, log), effect, ci,
            _p(w.p if w else None), _p(rank_p(base, s)), "; ".join(n for n in notes if n) or "-"]


def _centre(v: np.ndarray, log: bool) -> float:
    return math.exp(np.log(v).mean()) if log else float(v.mean())


def _n(s: Sample) -> str:
    """Runs in the comparison (censored ones included: they are in the rank test)."""
    return str(s.values.size + s.censored)


def _value(s: Sample, log: bool) -> str:
    if not s.values.size:
        return "never" if s.censored else "-"
    reached = f" ({s.values.size}/{s.values.size + s.censored} reached)" if s.censored else ""
    return mean_ci(s.values, log) + reached


def _p(p: float | None) -> str:
    return "-" if p is None or not math.isfinite(p) else f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"
