"""Time to a target across seeds, with the runs that never reached it counted: a run that stopped
(finished, or diverged) above the threshold is censored at its last step, known only to need
more. The summary is the median over all n runs, the censored ones as "more than their steps":
it is a number where more than half reached the target, else only a lower bound ("> N"). Never
a mean of the runs that reached it, which would make a method that mostly fails look fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from runner.report.aggregate import MIN_BAND

NOTE = ("median over the group's runs, a run that stopped before reaching the value counted as needing more than "
        "its steps (censored): a number where more than half reached it, else > the median of the steps each run "
        "reached it or stopped at; fewer than 3 runs: each run's step; k of n: how many of the group's runs reached it")


def censored_median(steps: Sequence[float | None], stopped: Sequence[float]) -> tuple[float, bool]:
    """(median, exact) of the steps to a target over all runs, `steps[i]` None for a run that
    stopped at `stopped[i]` without reaching it. Exact when more than half reached it (the middle
    values are then all observed); otherwise the median of the steps known, each censored run at
    its stop, a lower bound: the true median is above it."""
    reached = sum(s is not None for s in steps)
    if 2 * reached > len(steps):
        return float(np.median([s if s is not None else math.inf for s in steps])), True
    return float(np.median([s if s is not None else t for s, t in zip(steps, stopped)])), False


def reached_text(steps: Sequence[float | None], stopped: Sequence[float]) -> str:
    """A table cell: `median 140 (3 of 3 reached)`, `> 2000 (1 of 3 reached)`; fewer than
    MIN_BAND runs: each run's step (`120, > 2000 (1 of 2 reached)`); `-` with no run."""
    if not steps:
        return "-"
    k, n = sum(s is not None for s in steps), len(steps)
    count = f"({k} of {n} reached)"
    if n < MIN_BAND:  # reached first, in order; then the runs that stopped short, each at its stop
        known = sorted(s for s in steps if s is not None)
        short = sorted(t for s, t in zip(steps, stopped) if s is None)
        return ", ".join([*(f"{s:g}" for s in known), *(f"> {t:g}" for t in short)]) + f" {count}"
    median, exact = censored_median(steps, stopped)
    return f"median {median:g} {count}" if exact else f"median > {median:g} {count}"
