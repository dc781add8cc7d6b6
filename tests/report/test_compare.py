"""Comparisons of two groups (runner.report.compare, runner.report.difference) on data with a known
answer: Welch's interval and test against scipy and the formula by hand, a ratio of steps that is
exactly 1/2, censored runs, a side with one run; and `--baseline`/`--compare` from the command line."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from runner.report.compare import Stat, parse_stat, sample
from runner.report.difference import comparison_table, rank_p, welch
from runner.report.results import Group, Run
from runner.report.text import number
from tests.report.test_export import exported, write_run  # noqa: F401 - the fixture's run folders
from tests.report.test_report import report_cli

HEADER = ["group", "n", "value", "n baseline", "value baseline"]


def run(final: float | None = None, reached_at: float | None = None, status: str = "completed") -> Run:
    """A run whose train/loss ends at `final`, and falls below 0.5 first at step `reached_at` (None: never)."""
    step = np.arange(1.0, 101.0)
    loss = np.where(step < (reached_at or math.inf), 1.0, 0.1)
    return Run(Path("/runs/x"), 0, {}, [], {"status": status, "final": {"train/loss": final}},
               {"step": step, "train/loss": loss, "time_s": step / 10})


def cells(table, group: str) -> dict[str, str]:
    row = next(r for r in table.rows if r[0] == group)
    return dict(zip(table.header, row))


def test_welch_matches_scipy_and_the_formula():
    x, y = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0])
    w = welch(x, y)
    ref = stats.ttest_ind(y, x, equal_var=False)
    vx, vy = 5 / 3 / 4, 4 / 3  # sample variance over n: var(x) = 5/3 over 4 runs, var(y) = 4 over 3 (by hand)
    df = (vx + vy) ** 2 / (vx ** 2 / 3 + vy ** 2 / 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(vx + vy)
    assert w.effect == pytest.approx(1.5)
    assert (w.lo, w.hi) == pytest.approx((1.5 - half, 1.5 + half))
    assert (w.lo, w.hi) == pytest.approx(tuple(ref.confidence_interval(0.95)))
    assert w.p == pytest.approx(ref.pvalue) and w.df == pytest.approx(df)


def test_steps_compared_as_a_ratio_of_geometric_means():
    base = Group("A", [run(reached_at=k) for k in (10, 20, 40)])
    fast = Group("B", [run(reached_at=k) for k in (5, 10, 20)])
    stat = parse_stat("steps:train/loss<0.5")
    table = comparison_table(base, [fast], stat, "train/loss")
    c = cells(table, "B")
    # the logs differ by ln 2 run by run and have equal spread: Welch's df is 2(n - 1) = 4
    half = stats.t.ppf(0.975, 4) * math.sqrt(2 * np.var(np.log([10, 20, 40]), ddof=1) / 3)
    assert float(c["ratio (group / baseline)"]) == pytest.approx(0.5)
    w = welch(sample(base, stat).values, sample(fast, stat).values, log=True)
    assert (w.effect, w.lo, w.hi) == pytest.approx((0.5, 0.5 * math.exp(-half), 0.5 * math.exp(half)))
    width = w.hi - w.lo
    assert c["95% CI"] == f"[{number(w.lo, width)}, {number(w.hi, width)}]"  # to the digits the width supports
    assert float(c["Welch p"]) == pytest.approx(stats.ttest_ind(np.log([5, 10, 20]), np.log([10, 20, 40]),
                                                                equal_var=False).pvalue, rel=1e-2)
    assert c["n"] == c["n baseline"] == "3" and c["note"] == "-"


def test_censored_runs_get_no_interval_and_rank_worst():
    base = Group("A", [run(reached_at=k) for k in (10, 20, 40)])
    slow = Group("B", [run(reached_at=k) for k in (30, 50)] + [run(reached_at=None), run(reached_at=None)])
    stat = parse_stat("steps:train/loss<0.5")
    c = cells(comparison_table(base, [slow], stat, "train/loss"), "B")
    assert c["95% CI"] == "-" and c["Welch p"] == "-" and c["ratio (group / baseline)"] == "-"
    assert "censored" in c["note"] and "2/4 of the group" in c["note"]
    assert c["n"] == "4" and "(2/4 reached)" in c["value"]
    ref = stats.mannwhitneyu([30, 50, math.inf, math.inf], [10, 20, 40], alternative="two-sided").pvalue
    assert c["rank p"] == f"{ref:.2g}"
    assert rank_p(sample(base, stat), sample(slow, stat)) == pytest.approx(ref)


def test_a_diverged_final_value_is_censored_at_the_worst_end():
    stat = Stat("final", "train/loss")
    group = Group("B", [run(1.0), run(2.0), run(math.inf, status="diverged")])
    s = sample(group, stat)
    assert s.values.tolist() == [1.0, 2.0] and s.censored == 1 and s.worst == math.inf
    assert sample(Group("C", [run(0.5)]), Stat("final", "eval/acc")).worst == -math.inf  # higher is better
    failed = sample(Group("D", [run(1.0), run(3.0, status="failed")]), stat)
    assert failed.values.tolist() == [1.0]  # failed runs stop for reasons of their own: not counted


def test_one_run_on_a_side_gives_no_interval():
    base = Group("A", [run(1.0), run(2.0), run(3.0)])
    one = Group("B", [run(5.0)])
    c = cells(comparison_table(base, [one], Stat("final", "train/loss"), "train/loss"), "B")
    assert c["95% CI"] == "-" and c["Welch p"] == "-" and "no interval" in c["note"] and "1 run" in c["note"]
    assert float(c["difference (group - baseline)"]) == pytest.approx(3.0)  # the point estimate still shown
    assert c["n"] == "1"


def test_parse_stat_forms_and_errors():
    assert parse_stat("steps:gan/dist_to_eq<1e-3") == Stat("steps", "gan/dist_to_eq", False, 1e-3)
    assert parse_stat("evals:eval/acc>0.9") == Stat("evals", "eval/acc", True, 0.9)
    assert parse_stat("final") == Stat("final") and parse_stat("rate") == Stat("rate")
    for bad in ("steps:train/loss", "median:train/loss", "steps:train/loss<abc", "rate:x"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected one of final:METRIC"):
            parse_stat(bad)


def test_baseline_and_compare_from_the_command_line(exported):  # noqa: F811
    root, _ = exported
    out = root / "compare_report"
    cli = report_cli(str(root / "runs"), "--out", str(out), "--baseline", "lr=0.1", "--stat", "final:train/loss")
    assert cli.returncode == 0, cli.stdout
    assert "final train/loss: each group against lr=0.1" in cli.stdout
    page = (out / "index.html").read_text()
    assert "<h2>Comparisons</h2>" in page and "no interval: the group has 1 run" in page
    assert "<h2>Comparisons</h2>" in (out / "static.html").read_text()
    bad = report_cli(str(root / "runs"), "--out", str(out), "--compare", "lr=0.1", "lr=9")
    assert bad.returncode == 2 and "--compare 'lr=9': no group of that name" in bad.stdout
    assert "'lr=0.1'; 'lr=1'" in bad.stdout
    typo = report_cli(str(root / "runs"), "--out", str(out), "--baseline", "lr=0.1", "--stat", "final:train/los")
    assert typo.returncode == 2 and "no run logged train/los; the metrics are: eval/acc, train/grad_evals, train/loss" in typo.stdout


def test_rates_compared_as_a_ratio_of_geometric_means():
    def fitted(rate: float) -> Run:
        r = run(1.0)
        r.summary["convergence"] = {"conv/metric": "train/loss", "conv/kind": "linear", "conv/model": "exponential",
                                    "conv/rate": rate}
        return r

    base = Group("A", [fitted(v) for v in (0.90, 0.92, 0.94)])
    other = Group("B", [fitted(v) for v in (0.80, 0.85, 0.90)])
    table = comparison_table(base, [other], Stat("rate"), "train/loss")
    assert table.title == "fitted rate of train/loss: each group against A"
    c = cells(table, "B")
    ref = welch(np.array([0.90, 0.92, 0.94]), np.array([0.80, 0.85, 0.90]), log=True)
    gmean = stats.gmean([0.80, 0.85, 0.90]) / stats.gmean([0.90, 0.92, 0.94])
    assert ref.effect == pytest.approx(gmean) and c["ratio (group / baseline)"] == number(ref.effect, ref.hi - ref.lo)
    p = stats.ttest_ind(np.log([0.80, 0.85, 0.90]), np.log([0.90, 0.92, 0.94]), equal_var=False).pvalue
    assert c["Welch p"] == f"{p:.2g}"
