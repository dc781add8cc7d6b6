"""Performance profiles (runner.report.profiles) on costs with a known answer, and `--problem` from
the command line (its figure in PNG, SVG, PDF and the interactive page)."""

from __future__ import annotations

import math

import pytest

from runner.report.compare import parse_stat
from runner.report.profiles import methods, profile_table, ratios, rho, steps
from runner.report.results import Group
from tests.report.test_compare import run
from tests.report.test_export import exported  # noqa: F401 - the fixture's run folders
from tests.report.test_report import report_cli


def test_ratios_and_rho_by_hand():
    # 3 problems; a is best on p1 and p2, b on p3; c never solves p3; nobody solves p4
    costs = {"a": {"p1": 10, "p2": 20, "p3": 60, "p4": math.inf},
             "b": {"p1": 20, "p2": 80, "p3": 30, "p4": math.inf},
             "c": {"p1": 15, "p2": 20, "p3": math.inf, "p4": math.nan}}
    r = ratios(costs, ["p1", "p2", "p3", "p4"])
    assert r["a"].tolist() == [1, 1, 2, math.inf] and r["b"].tolist() == [2, 4, 1, math.inf]
    assert r["c"].tolist() == [1.5, 1, math.inf, math.inf]
    assert [rho(r["a"], t) for t in (1, 1.9, 2, 100)] == [0.5, 0.5, 0.75, 0.75]
    assert [rho(r["b"], t) for t in (1, 2, 3.9, 4)] == [0.25, 0.5, 0.5, 0.75]
    assert [rho(r["c"], t) for t in (1, 1.5)] == [0.25, 0.5]
    x, y = steps(r["b"], 8.0)  # the step function's corners, from tau = 1 to 8
    assert x.tolist() == [1, 2, 2, 4, 4, 8] and y.tolist() == [0.25, 0.25, 0.5, 0.5, 0.75, 0.75]


def test_methods_costs_are_medians_with_never_as_infinity():
    def group(env: str, opt: str, reached: list) -> Group:
        g = Group(f"task.env={env} optim={opt}", [run(reached_at=k) for k in reached])
        for r in g.runs:
            r.config = {"task.env": env, "optim": opt}
        return g

    groups = [group("lake", "sgd", [10, 20, 30]), group("lake", "adam", [40, None, None]),
              group("cliff", "sgd", [50, 60, None]), group("cliff", "adam", [25, 25, 25])]
    found, problems = methods(groups, "task.env")
    assert list(found) == ["optim=sgd", "optim=adam"] and problems == ["lake", "cliff"]
    table, r = profile_table(found, problems, parse_stat("steps:train/loss<0.5"), "task.env")
    assert r["optim=sgd"].tolist() == [1, 2.4] and r["optim=adam"].tolist() == [math.inf, 1]
    sgd = dict(zip(table.header, table.rows[0]))
    assert sgd["task.env=lake"] == "20 (3/3) x1.00" and sgd["task.env=cliff"] == "60 (2/3) x2.40"
    assert (sgd["rho(1)"], sgd["rho(4)"]) == ("0.50", "1.00")
    assert dict(zip(table.header, table.rows[1]))["task.env=lake"] == "never (1/3) xinf"
    with pytest.raises(ValueError, match="--problem 'task.game': not a config key.*differ between groups: optim, task.env"):
        methods(groups, "task.game")


def test_problem_from_the_command_line(exported):  # noqa: F811
    root, _ = exported
    out = root / "profile_report"
    cli = report_cli(str(root / "runs"), "--out", str(out), "--problem", "optim.lr", "--stat", "steps:train/loss<2.5")
    assert cli.returncode == 0, cli.stdout
    assert "Performance profile: steps until train/loss < 2.5" in cli.stdout
    assert all((out / f"fig_profile.{kind}").stat().st_size > 1000 for kind in ("png", "svg", "pdf"))
    page = (out / "index.html").read_text()
    assert "<h2>Performance profiles</h2>" in page and "fig_profile" in page
    bad = report_cli(str(root / "runs"), "--out", str(out), "--problem", "optim.lr")
    assert bad.returncode == 2 and "a profile needs a cost" in bad.stdout
