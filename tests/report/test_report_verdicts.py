"""runner-report's convergence verdicts on run folders written by hand, whose answers are known:
the geometric-mean interval of rates across seeds, two seeds as a range, one seed with its own
interval, kinds that disagree, repeats of a seed counted once, no R², the local-rate figure, a
sampler's error on log-log axes, and a claim's predicted law drawn only when claim.json is there."""

from __future__ import annotations

import html as html_text
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from runner.report.__main__ import build
from runner.report.aggregate import y_scale
from runner.report.claims import claim_figure, law, read_claims
from runner.report.conv import order_figure
from runner.report.figures import metric_figure

T_975_2 = 4.302652729749464  # Student t 0.975 quantile, 2 degrees of freedom (tables)
STEPS = list(range(0, 101, 5))
METRIC = "gan/dist_to_eq"


def local(rate: float) -> list[list[float]]:
    """A local rate that starts at 1 (a plateau) and settles on `rate` by step ~50."""
    return [[t, rate + (1 - rate) * math.exp(-t / 10), -t * (1 - rate)] for t in STEPS[2:-2]]


def conv(kind: str, rate: float | None = None, exponent: float | None = None, **more) -> dict:
    law = {"linear": "exponential", "diverging": "exponential", "sublinear": "power"}.get(kind)
    return {"conv/metric": METRIC, "conv/x": "step", "conv/kind": kind, "conv/model": law,
            "conv/rate": rate, "conv/rate_ci": [rate * 0.999, rate * 1.001] if rate else None,
            "conv/exponent": exponent, "conv/exponent_ci": [exponent - 0.05, exponent + 0.05] if exponent else None,
            "conv/window": [50, 100], "conv/points": 11, "conv/r2": 0.123456, "conv/se": 0.01,
            "conv/reason": f"{kind}: over steps 50-100 (11 points)", "conv/local": local(rate or 0.9), **more}


def write_run(folder: Path, lr: float, seed: int, convergence: dict, records: list[dict], started: str = "2026-01-01T00:00:00") -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "task": {"name": "toy"}, "optim": {"lr": lr}}))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"optim.lr={lr}", f"seed={seed}"]))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    metric = convergence["conv/metric"]
    last = records[-1][metric]
    (folder / "summary.json").write_text(json.dumps({
        "status": "completed", "error": None, "steps": records[-1]["step"], "wall_time_s": 1.0, "device": "cpu",
        "final": {metric: last}, "best": {metric: last}, "convergence": convergence, "targets": {},
        "config_digest": f"digest-{lr}-{seed}", "provenance": {"started_at": started}}))
    return folder


def geometric(rate: float) -> list[dict]:
    return [{"step": t, "time_s": t / 100, METRIC: rate ** t} for t in STEPS]


RATES_3 = (0.95, 0.8, 0.9)  # group lr=0.1, three seeds


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("verdicts")
    for seed, r in enumerate(RATES_3):
        write_run(root / "sweep" / f"a{seed}", 0.1, seed, conv("linear", r), geometric(r))
    write_run(root / "sweep" / "b0", 0.2, 0, conv("linear", 0.5), geometric(0.5))
    write_run(root / "sweep" / "b1", 0.2, 1, conv("linear", 0.7), geometric(0.7))
    write_run(root / "rerun" / "b0", 0.2, 0, conv("linear", 0.6), geometric(0.6), started="2026-01-02T00:00:00")
    write_run(root / "sweep" / "c0", 0.3, 0, conv("linear", 0.99, **{"conv/rate_ci": [0.985, 0.995]}), geometric(0.99))
    write_run(root / "sweep" / "d0", 0.4, 0, conv("linear", 0.9), geometric(0.9))
    write_run(root / "sweep" / "d1", 0.4, 1, conv("linear", 0.8), geometric(0.8))
    write_run(root / "sweep" / "d2", 0.4, 2, conv("sublinear", exponent=-1.0), geometric(0.85))
    return root


@pytest.fixture(scope="module")
def report(sweep):
    return build([sweep / "sweep", sweep / "rerun"], sweep / "report")


def row(html: str, title: str, label: str) -> list[str]:
    """The cells of the row of `label` in the table titled `title`."""
    table = html[html.index(title):].split("</table>")[0]
    tr = next(t for t in table.split("<tr>") if f"<td>{label}</td>" in t)
    return [html_text.unescape(re.sub(r"<[^>]+>", "", c)) for c in tr.split("</td>")[:-1]]


def numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+\.?\d*(?:e-?\d+)?", text)]


def test_three_seeds_get_a_geometric_mean_and_a_t_interval_of_log_rates(report):
    cells = row(report.html.read_text(), "Convergence verdict of", "lr=0.1")
    logs = np.log(RATES_3)
    half = T_975_2 * logs.std(ddof=1) / math.sqrt(3)
    centre, lo, hi = numbers(cells[3])
    assert cells[1] == "linear (3/3)" and cells[2] == "rate"
    # shown to two digits of the interval's width (0.01 here); the arithmetic mean's interval would be [0.69, 1.07]
    assert centre == pytest.approx(math.exp(logs.mean()), abs=0.006)
    assert lo == pytest.approx(math.exp(logs.mean() - half), abs=0.006) and lo == 0.71
    assert hi == pytest.approx(math.exp(logs.mean() + half), abs=0.006) and hi == 1.10
    assert 0 < lo and hi > 1  # on the log scale the interval stays positive, wide as three seeds are
    assert "geometric mean, 95% t (3 seeds)" in cells[4]


def test_two_seeds_are_a_range_and_a_repeat_counts_once(report):
    html = report.html.read_text()
    cells = row(html, "Convergence verdict of", "lr=0.2")
    assert cells[3] == "0.60 to 0.70"  # the rerun of seed 0 (0.6, later) replaces its first run (0.5)
    assert "2 seeds' values" in cells[4] and cells[1] == "linear (2/2)"
    assert "12.7" not in cells[3]
    g = next(g for g in report.groups if g.label == "lr=0.2")
    assert sorted(str(r.path.parent.name) + "/" + r.path.name for r in g.runs) == ["rerun/b0", "sweep/b1"]
    assert [(left.path.parent.name, kept.path.parent.name) for left, kept in g.repeats] == [("sweep", "rerun")]
    assert "Repeats of one seed, counted once" in html
    assert "1 repeat of a seed left out" in row(html, "Groups", "lr=0.2")[1]


def test_one_seed_shows_its_own_interval_and_differing_kinds_are_not_pooled(report):
    html = report.html.read_text()
    one = row(html, "Convergence verdict of", "lr=0.3")
    assert one[3] == "0.990 [0.985, 0.995]" and "the run's own 95% interval" in one[4]
    mixed = row(html, "Convergence verdict of", "lr=0.4")
    assert mixed[1] == "linear (2/3), sublinear (1/3)"
    assert mixed[3] == "0.80 to 0.90" and "over the 2 linear seeds only" in mixed[7]


def test_no_r2_anywhere_and_each_run_has_its_window_and_reason(report):
    html = report.html.read_text()
    assert "R²" not in html and "0.123" not in html  # conv/r2 = 0.123456 in every summary
    cells = row(html, "Convergence verdict of each run", "lr=0.3")
    assert cells[3:8] == ["linear", "rate 0.990 [0.985, 0.995]", "50-100", "11", "linear: over steps 50-100 (11 points)"]


def test_local_rate_figure_draws_the_median_of_the_runs_and_marks_the_window(report):
    assert report.html.parent.joinpath("fig_local_rate.png") in report.figures
    from runner.report.conv import local_figure

    fig = local_figure(report.groups)
    rate_ax, = fig.axes  # every group is led by linear seeds: no exponent panel
    lines = {l.get_gid(): l for l in rate_ax.get_lines() if l.get_gid()}
    median = lines["median lr=0.1"]
    x, y = median.get_xdata(), median.get_ydata()
    at_50 = [r + (1 - r) * math.exp(-5) for r in RATES_3]
    assert y[list(x).index(50)] == pytest.approx(np.median(at_50))
    window = lines["window lr=0.1"].get_xdata()
    assert window.min() == 50 and window.max() == 90  # the fit window, where the local curve has entries
    assert rate_ax.get_ylabel() == "local rate per step" and rate_ax.get_xscale() == "linear"


def test_old_run_folders_render_without_local_rates(tmp_path):
    old = {"conv/metric": METRIC, "conv/kind": "linear", "conv/rate": 0.9, "conv/exponent": -3.0, "conv/r2": 0.99,
           "conv/points": 11}
    for seed in (0, 1, 2):
        write_run(tmp_path / "sweep" / str(seed), 0.1, seed, old, geometric(0.9))
    rep = build([tmp_path / "sweep"], tmp_path / "report")
    html = rep.html.read_text()
    assert "linear (3/3)" in html and "R²" not in html
    assert not (tmp_path / "report" / "fig_local_rate.png").exists() and "fig_claim" not in html
    assert "Claim:" not in html


def diffusion(folder: Path, seed: int, scale: float) -> Path:
    """A second-order-evaluation sampler: N = 4..128 steps (the record's step), NFE = 2N, error
    scale / NFE, fitted on NFE 32..256 (conv/window is in NFE, the units of conv/x)."""
    nfe = [2 * n for n in (4, 8, 16, 32, 64, 128)]
    records = [{"step": n // 2, "time_s": n / 100, "diff/nfe": n, "diff/err": scale / n} for n in nfe]
    c = {"conv/metric": "diff/err", "conv/x": "diff/nfe", "conv/kind": "sublinear", "conv/model": "power",
         "conv/order": 1.0 + 0.01 * seed, "conv/order_ci": [0.95, 1.05], "conv/exponent": -1.0, "conv/rate": None,
         "conv/window": [32, 256], "conv/points": 4, "conv/reason": "order 1.0 on NFE 32-256",
         "conv/local": [[math.sqrt(a * b), None, -1.0 - 0.01 * seed] for a, b in zip(nfe, nfe[1:])]}
    write_run(folder, 0.1, seed, c, records)
    return folder


def test_diffusion_error_is_drawn_against_log_nfe_with_its_order(tmp_path):
    for seed, scale in enumerate((1.0, 4.0)):
        diffusion(tmp_path / "sweep" / str(seed), seed, scale)
    rep = build([tmp_path / "sweep"], tmp_path / "report")
    assert tmp_path / "report" / "fig_order.png" in rep.figures
    assert tmp_path / "report" / "fig_local_rate.png" not in rep.figures  # its local order is beside the error
    ax, local_ax = order_figure(rep.groups).axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and local_ax.get_xscale() == "log"
    fitted = next(line for line in ax.get_lines() if (line.get_gid() or "").startswith("order"))
    x, y = fitted.get_xdata(), fitted.get_ydata()
    assert x.min() == pytest.approx(32) and x.max() == pytest.approx(256)  # the window in NFE, not in steps
    assert y[0] == pytest.approx(2.0 / 32)  # anchored at the geometric mean of 1/32 and 4/32
    assert np.polyfit(np.log(x), np.log(y), 1)[0] == pytest.approx(-1.005)  # minus the seeds' mean order
    median = next(line for line in local_ax.get_lines() if (line.get_gid() or "").startswith("median"))
    assert median.get_ydata() == pytest.approx(np.full(5, 1.005))  # local order: minus the local exponent
    curves = metric_figure(rep.groups, "diff/err", y_scale(rep.groups[0].runs, "diff/err"))
    assert [a.get_xscale() for a in curves.axes] == ["log"] and "NFE" in curves.axes[0].get_xlabel()
    assert "order 1.000 to 1.010" in rep.html.read_text()


def test_claim_overlay_draws_the_predicted_rate_from_the_window_start(sweep, tmp_path):
    folder = shutil.copytree(sweep / "sweep", tmp_path / "claim_sweep")
    claim = {"name": "toy contraction", "source": "Toy et al. 2020, Thm 1", "measure": "conv/rate", "relation": "==",
             "rows": [{"setting": {"optim.lr": 0.1}, "predicted": 0.9, "measured": 0.881, "ci": [0.7, 1.1],
                       "verdict": "PASS", "runs": [f"a{s}" for s in range(3)]},  # relative to the claim's folder
                      {"setting": {"optim.lr": 0.3}, "predicted": 0.5, "measured": 0.99, "ci": [0.985, 0.995],
                       "verdict": "FAIL", "runs": []}]}  # no runs listed: found by their setting
    (folder / "claim.json").write_text(json.dumps(claim))
    rep = build([folder], tmp_path / "report")
    html = rep.html.read_text()
    assert "Claim: toy contraction" in html and "Toy et al. 2020, Thm 1" in html
    assert row(html, "Claim: toy contraction", "optim.lr=0.1")[1:4] == ["0.90", "0.88 [0.70, 1.10]", "PASS"]
    assert row(html, "Claim: toy contraction", "optim.lr=0.3")[1:4] == ["0.500", "0.990 [0.985, 0.995]", "FAIL"]
    assert any(f.name.startswith("fig_claim_00") and f.exists() for f in rep.figures)
    ax = claim_figure(read_claims([folder])[0], [r for g in rep.groups for r in g.runs]).axes[0]
    lines = {l.get_gid(): l for l in ax.get_lines() if l.get_gid()}
    t, g = lines["predicted 0"].get_xdata(), lines["predicted 0"].get_ydata()
    assert t[0] == 50 and g[0] == pytest.approx(math.exp(50 * np.mean(np.log(RATES_3))))  # the measured mean at t_a
    assert np.log(g[-1] / g[0]) / (t[-1] - t[0]) == pytest.approx(math.log(0.9))
    t, g = lines["predicted 1"].get_xdata(), lines["predicted 1"].get_ydata()
    assert g[0] == pytest.approx(0.99 ** 50) and g[10] / g[0] == pytest.approx(0.5 ** (t[10] - t[0]))


def test_predicted_laws_pass_through_their_anchor():
    t = np.array([10.0, 20.0, 40.0])
    assert law("conv/rate", 0.5, t, 10.0, 3.0) == pytest.approx([3.0, 3.0 * 0.5 ** 10, 3.0 * 0.5 ** 30])
    assert law("conv/exponent", -1.0, t, 10.0, 3.0) == pytest.approx([3.0, 1.5, 0.75])  # g ~ t^-1
    assert law("conv/order", 2.0, t, 10.0, 3.0) == pytest.approx([3.0, 0.75, 0.1875])  # error ~ NFE^-2
