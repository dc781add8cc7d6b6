"""Two groups compared on one summary of their runs, with the uncertainty the seeds allow:
`runner-report --baseline GROUP` (every other group against it), `--compare A B` (B against A),
`--stat` (which summary; default the primary metric's final value).

    final:METRIC  best:METRIC        the run's last (best) logged value (final alone: the primary metric's)
    steps:METRIC<THRESH (or >)       first logged step at which METRIC was below (above) THRESH
    time:METRIC<THRESH, evals:...    the training time (gradient evaluations) at that step
    rate                             the fitted rate of the primary metric (or exponent, order)

Counts (steps, time, evaluations) are compared as a ratio of geometric means, a Welch t-interval
on their logarithms: they are positive and skewed, and "B takes 0.6 times the steps of A" stays
true when a run is made longer, where a difference would not. Rates likewise (a geometric mean,
as the verdicts table gives it); exponents and orders, already slopes of a logarithm, as a
difference; a final or best value as a difference, or as a ratio of geometric means for a metric
the report draws on a log axis. The 95% interval is Welch's (no equal variances assumed), the
p-values Welch's t-test and the Mann-Whitney rank test. A run that never reached the threshold (or
ended with a NaN or infinite value) is censored: it has no value to average, so no t-interval is
given; the rank test counts it as worse than every run that got there. Only completed and diverged
runs count (failed and unfinished ones stop for reasons of their own).
"""

from __future__ import annotations

import argparse
import math
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from runner.report.fit import NAMES, run_fit
from runner.report.results import Group, Run
from runner.run.metrics import higher_is_better

COSTS = {"steps": "step", "time": "time", "evals": "grad_evals"}  # stat kind -> Run.x axis
FORMS = "final:METRIC, best:METRIC, steps:METRIC<THRESH (or >THRESH), time:METRIC<THRESH, evals:METRIC<THRESH, rate"


@dataclass(frozen=True)
class Stat:
    kind: str                    # final | best | steps | time | evals | rate
    metric: str | None = None    # None: the primary metric (rate)
    above: bool = False          # thresholds: reached when the metric is above it
    threshold: float | None = None

    def text(self, primary: str | None = None) -> str:
        if self.kind == "rate":
            return f"fitted rate of {primary or 'the primary metric'}"
        if self.kind in COSTS:
            return f"{self.kind} until {self.metric} {'>' if self.above else '<'} {self.threshold:g}"
        return f"{self.kind} {self.metric}"


def parse_stat(text: str) -> Stat:
    """`--stat`'s value as a Stat; argparse shows the error with the forms allowed."""
    kind, _, rest = text.partition(":")
    if kind == "rate" and not rest:
        return Stat("rate")
    if kind in ("final", "best"):
        return Stat(kind, rest or None)  # no metric: the primary one
    m = re.fullmatch(r"(.+?)\s*([<>])\s*([-+0-9.eE]+|inf)", rest)
    if kind in COSTS and m:
        try:
            return Stat(kind, m[1], m[2] == ">", float(m[3]))
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"--stat {text!r}: expected one of {FORMS}")


@dataclass
class Sample:
    """One group's values of a Stat: finite values, runs censored (worst), runs without a value."""
    values: np.ndarray
    censored: int = 0
    missing: int = 0
    worst: float = math.inf      # where the rank test puts a censored run
    why_missing: list[str] = field(default_factory=list)


def sample(group: Group, stat: Stat, measure: str | None = None, log: bool = False) -> Sample:
    values, s = [], Sample(np.array([]))
    if stat.kind in ("final", "best"):
        s.worst = -math.inf if higher_is_better(stat.metric) else math.inf
    for run in group.finished():
        v = run_value(run, stat, measure)
        if v is None:
            s.missing += 1
        elif not math.isfinite(v):
            s.censored += 1
        elif log and v <= 0:
            s.missing += 1
            s.why_missing.append("a value <= 0 on a log scale")
        else:
            values.append(v)
    s.values = np.array(values, dtype=float)
    return s


def run_value(run: Run, stat: Stat, measure: str | None) -> float | None:
    """The run's value of `stat`; inf: never reached the threshold (or a non-finite final value);
    None: the run has no such value (metric not logged, no fit of that kind)."""
    if stat.kind in ("final", "best"):
        v = (run.summary.get(stat.kind) or {}).get(stat.metric)
        return None if v is None else float(v)
    if stat.kind == "rate":
        fit = run_fit(run)
        return fit.value if fit.measure == measure and fit.value is not None else None
    y, x = run.columns.get(stat.metric), run.x(COSTS[stat.kind])
    if y is None or x is None:
        return None
    with np.errstate(invalid="ignore"):
        hit = np.flatnonzero((y > stat.threshold) if stat.above else (y < stat.threshold))
    hit = hit[np.isfinite(x[hit])]
    return float(x[hit[0]]) if hit.size else math.inf


def rate_measure(groups: Sequence[Group]) -> str | None:
    """The measure most of these groups' runs fitted (rate, exponent or order)."""
    found = Counter(f.measure for g in groups for r in g.finished() for f in [run_fit(r)] if f.measure)
    return found.most_common(1)[0][0] if found else None


def on_log_scale(stat: Stat, measure: str | None, log_metrics: Collection[str]) -> bool:
    return stat.kind in COSTS or (stat.kind == "rate" and measure == "conv/rate") or stat.metric in log_metrics


def resolve(stat: Stat, primary: str | None) -> Stat:
    """`stat` with the primary metric where it names none; ValueError when there is no primary."""
    if stat.metric is not None or stat.kind == "rate":
        return stat
    if primary is None:
        raise ValueError("the runs name no primary metric (summary.json convergence): choose one with --stat final:METRIC")
    return Stat(stat.kind, primary, stat.above, stat.threshold)


def find_group(groups: Sequence[Group], label: str, option: str) -> Group:
    """The group named `label` as the report shows it; ValueError listing the names otherwise."""
    found = next((g for g in groups if g.label == label), None)
    if found is None:
        names = "; ".join(repr(g.label) for g in groups)
        raise ValueError(f"{option} {label!r}: no group of that name; the groups are: {names}")
    return found
