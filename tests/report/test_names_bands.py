"""Group names (automatic and --label), bands by the number of seeds, log-space means and censored
time-to-target, on runs built in memory whose answers are known by hand."""

from __future__ import annotations

import argparse
import io
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from runner.report.aggregate import band, curve, curve_metrics
from runner.report.figures import FEW, metric_figure
from runner.report.names import ALL, BadLabel, auto_names, label_arg, name_groups, shorten
from runner.report.results import Group, Run
from runner.report.targets import censored_median, reached_text
from runner.report.text import mean_ci

T_975_2 = 4.302652729749464  # Student t 0.975 quantile, 2 degrees of freedom (tables)


def run(overrides: list[str], config: dict | None = None, seed: int = 0, values: list[float] | None = None) -> Run:
    given = dict(o.split("=", 1) for o in overrides)
    config = config if config is not None else {k: float(v) if v[0].isdigit() else v for k, v in given.items()}
    steps = np.arange(5, dtype=float)
    cols = {"step": steps, "time_s": steps / 10, "train/loss": np.array(values if values is not None else [1.0] * 5)}
    return Run(Path(f"runs/{seed}"), seed, config, overrides, {"status": "completed"}, cols)


def groups_of(*override_lists: list[str]) -> list[Group]:
    return [Group("raw", [run(o)]) for o in override_lists]


# --- names -------------------------------------------------------------------------------------

def test_automatic_names_keep_the_keys_that_differ_as_short_suffixes():
    groups = groups_of(["task.method=pg", "task.tau=0.0", "logger=none"], ["task.method=npg", "task.tau=0.0", "logger=none"],
                       ["task.method=npg", "task.tau=0.01", "logger=none"])
    name_groups(groups)
    assert [g.label for g in groups] == ["method=pg tau=0.0", "method=npg tau=0.0", "method=npg tau=0.01"]
    assert groups[0].parts == [("task.method", "method", "pg"), ("task.tau", "tau", "0.0")]


def test_a_suffix_two_keys_share_is_lengthened_until_it_is_unambiguous():
    assert shorten(["optim.lr", "optim.aux.lr", "task.tau"]) == {"optim.lr": "optim.lr", "optim.aux.lr": "aux.lr",
                                                                 "task.tau": "tau"}
    groups = groups_of(["optim.lr=0.1", "optim.aux.lr=1"], ["optim.lr=0.2", "optim.aux.lr=1"], ["optim.lr=0.2", "optim.aux.lr=2"])
    assert [" ".join(f"{s}={v}" for _, s, v in p) for p in auto_names(groups)] == [
        "optim.lr=0.1 aux.lr=1", "optim.lr=0.2 aux.lr=1", "optim.lr=0.2 aux.lr=2"]


def test_one_group_is_all_runs_and_equal_overrides_fall_back_on_the_config():
    only = groups_of(["optim.lr=0.1"])
    name_groups(only)
    assert only[0].label == ALL
    same = [Group("raw", [run(["optim.lr=0.1"], {"optim.lr": 0.1, "task.steps": s})]) for s in (100, 200)]
    name_groups(same)  # overrides equal, configs not (a default changed between two sweeps)
    assert [g.label for g in same] == ["steps=100", "steps=200"]


def test_a_label_names_the_one_group_it_matches_by_value_and_key_suffix():
    groups = groups_of(["optim.lr=0.1", "task.method=pg"], ["optim.lr=0.1", "task.method=npg"], ["optim.lr=0.2", "task.method=npg"])
    name_groups(groups, [label_arg("lr=1e-1 method=npg:GD 1/L"), label_arg("optim.lr=0.2:fast: big steps")])
    assert [g.label for g in groups] == ["lr=0.1 method=pg", "GD 1/L", "fast: big steps"]


def test_a_label_that_matches_no_group_or_several_is_an_error_listing_the_groups():
    groups = groups_of(["optim.lr=0.1", "task.method=pg"], ["optim.lr=0.1", "task.method=npg"])
    with pytest.raises(BadLabel, match=r"'lr=0.3:x' matches no group; the groups are: method=pg; method=npg"):
        name_groups(groups, [label_arg("lr=0.3:x")])
    with pytest.raises(BadLabel, match=r"'lrr=0.1:x' matches no group \(no group has a key lrr or ending in .lrr\)"):
        name_groups(groups, [label_arg("lrr=0.1:x")])
    with pytest.raises(BadLabel, match=r"'lr=0.1:x' matches 2 groups"):
        name_groups(groups_of(["optim.lr=0.1", "task.method=pg"], ["optim.lr=0.1", "task.method=npg"]), [label_arg("lr=0.1:x")])
    with pytest.raises(BadLabel, match="two groups would be named 'same'"):
        name_groups(groups_of(["task.method=pg"], ["task.method=npg"]), [label_arg("method=pg:same"), label_arg("method=npg:same")])


@pytest.mark.parametrize("text", ["lr=0.1", "lr=0.1:", ":name", "lr0.1:name", "=0.1:name"])
def test_a_label_not_of_the_form_selector_colon_name_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected 'key=value"):
        label_arg(text)


# --- bands -------------------------------------------------------------------------------------

def test_a_band_needs_three_seeds():
    mean, lo, hi, n = band(np.array([[1.0, 1.0, 4.0], [2.0, 3.0, np.nan], [3.0, np.nan, np.nan]]))
    assert n.tolist() == [3, 2, 1] and mean.tolist() == [2.0, 2.0, 4.0]
    assert (lo[0], hi[0]) == pytest.approx((2 - T_975_2 / math.sqrt(3), 2 + T_975_2 / math.sqrt(3)))  # s = 1
    assert np.isnan(lo[1:]).all() and np.isnan(hi[1:]).all()  # two values, one value: no band


def test_two_seeds_are_drawn_as_their_runs_with_the_mean_and_no_band():
    runs = [run([], {}, seed=s, values=[4.0, 3.0, 2.0, 1.0, v]) for s, v in ((0, 0.5), (1, 1.5))]
    groups = [Group("two", runs), Group("three", [run([], {}, seed=s, values=[4.0 + s] * 5) for s in range(3)])]
    fig = metric_figure(groups, "train/loss", ("linear", None))
    ax = fig.axes[0]
    thin = [line for line in ax.lines if line.get_linewidth() < 1]
    assert sorted(line.get_gid() for line in thin) == ["two seed 0", "two seed 1"]
    assert [line.get_ydata()[-1] for line in thin] == [0.5, 1.5]
    filled = [c for c in ax.collections if isinstance(c, PolyCollection) and any(len(p.vertices) for p in c.get_paths())]
    assert len(filled) == 1  # the three-seed group's band only
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["two (n=2, no band)", "three (n=3)"] and FEW in fig.get_suptitle()


def test_log_axes_average_in_log_space_and_never_reach_zero():
    """Values spanning nine decades: the arithmetic t-band would reach far below zero; the
    geometric one stays positive, centred on the geometric mean."""
    values = [1e-6, 1.0, 1e3]
    runs = [run([], {}, seed=s, values=[v] * 5) for s, v in enumerate(values)]
    arithmetic = band(np.array(values))
    assert arithmetic[1] < 0
    c = curve(runs, "train/loss", "step", floor=1e-6)
    assert c.mean[0] == pytest.approx(10 ** np.mean(np.log10(values)))
    assert (c.lo > 0).all() and (c.mean > 0).all()
    half = T_975_2 * np.std(np.log10(values), ddof=1) / math.sqrt(3)
    assert c.lo[0] == pytest.approx(c.mean[0] / 10 ** half) and c.hi[0] == pytest.approx(c.mean[0] * 10 ** half)
    fig = metric_figure([Group("g", runs)], "train/loss", ("log", 1e-6))
    fig.savefig(io.BytesIO(), format="png")
    assert fig.axes[0].get_yscale() == "log" and fig.axes[0].get_ylim()[0] > 0


# --- time to target ----------------------------------------------------------------------------

def test_time_to_target_counts_the_runs_that_never_reached_it():
    assert reached_text([100, 300, None], [1000, 1000, 1000]) == "median 300 (2 of 3 reached)"  # not 200, the mean of two
    assert reached_text([100, None, None], [1000, 1000, 800]) == "median > 800 (1 of 3 reached)"
    assert reached_text([None, None, None], [2000] * 3) == "median > 2000 (0 of 3 reached)"
    assert reached_text([40, None], [500, 500]) == "40, > 500 (1 of 2 reached)"
    assert reached_text([], []) == "-"


def test_censored_median_is_exact_only_when_more_than_half_reached():
    assert censored_median([10, 20, 30, None], [99] * 4) == (25.0, True)  # the two middle values observed
    assert censored_median([10, 20, None, None], [99, 99, 50, 60]) == (35.0, False)  # a lower bound


def test_a_band_of_a_metric_never_negative_is_cut_at_zero_and_the_title_says_so():
    runs = [run([], {}, seed=s, values=[v] * 5) for s, v in enumerate((0.0, 0.01, 0.5))]  # an entropy, say
    fig = metric_figure([Group("g", runs)], "train/loss", ("linear", None))
    band_paths = [p.vertices for c in fig.axes[0].collections if isinstance(c, PolyCollection) for p in c.get_paths()]
    assert band_paths and min(v[:, 1].min() for v in band_paths) == 0.0  # the t-interval reaches -0.52
    assert "cut at 0" in fig.get_suptitle()
    one = metric_figure([Group("g", runs[:1])], "train/loss", ("linear", None))
    assert "one run per group" in one.get_suptitle() and one.legends[0].get_texts()[0].get_text() == "g (n=1)"


def test_geometric_intervals_keep_digits_at_their_low_end():
    """exp(mean ln v +- t s / sqrt(3)) of 0.02, 0.1, 0.5: 0.1 [0.0018, 5.4], not 0.1 [0.0, 5.4]."""
    s = np.std(np.log([0.02, 0.1, 0.5]), ddof=1)
    lo, hi = 0.1 * math.exp(-T_975_2 * s / math.sqrt(3)), 0.1 * math.exp(T_975_2 * s / math.sqrt(3))
    assert (round(lo, 4), round(hi, 1)) == (0.0018, 5.4)
    assert mean_ci([0.02, 0.1, 0.5], log=True) == "0.10 [0.0018, 5.4]"
    assert mean_ci([3e-16] * 3, log=True) == "3e-16 (all 3 seeds)"


def test_a_value_far_below_the_spread_keeps_its_own_digits():
    assert mean_ci([-3.0, -0.0003]) == "-3.0 to -0.00030"  # not "-0.0"
    assert reached_text([740, 140], [2000, 2000]) == "140, 740 (2 of 2 reached)"


def test_a_samplers_error_is_drawn_against_nfe_on_a_log_axis_and_its_step_counts_are_axes():
    """diff/steps and diff/nfe are x-axes, not figures; two seeds of a sampler: their runs, thin."""
    runs = []
    for seed, c in ((0, 1.0), (1, 2.0)):
        steps = np.array([4.0, 8.0, 16.0, 32.0])
        runs.append(Run(Path(f"s{seed}"), seed, {}, [], {"status": "completed"},
                        {"step": steps, "diff/steps": steps, "diff/nfe": 2 * steps - 1, "diff/err": c / steps}))
    assert curve_metrics(runs, "diff/err") == ["diff/err"]
    fig = metric_figure([Group("heun", runs)], "diff/err", ("log", 1 / 32))
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and "NFE" in ax.get_xlabel()
    thin = [line for line in ax.lines if line.get_linewidth() < 1]
    assert [line.get_xdata().tolist() for line in thin] == [[7.0, 15.0, 31.0, 63.0]] * 2
    mean = next(line for line in ax.lines if line.get_linewidth() > 1)
    assert mean.get_ydata() == pytest.approx(np.sqrt(2) / np.array([4.0, 8.0, 16.0, 32.0]))  # geometric mean of c = 1, 2
