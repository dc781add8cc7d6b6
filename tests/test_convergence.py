"""The convergence fit on sequences whose rate is known, the divergence rule, and sharpness
against an exactly known Hessian."""

from __future__ import annotations

import math

import pytest
import torch

from runner.convergence import fit_tail
from runner.metrics import History
from runner.run import diverged
from runner.sharpness import top_hessian_eigenvalue


def test_geometric_sequence_is_linear_with_its_rate():
    series = [(t, 3.0 * 0.9**t) for t in range(1, 201)]
    fit = fit_tail(series, tail=0.5, thresholds=[1e-1, 1e-3])
    assert fit["conv/kind"] == "linear"
    assert fit["conv/rate"] == pytest.approx(0.9, rel=1e-9)
    assert fit["conv/r2_linear"] == pytest.approx(1.0)
    assert fit["conv/steps_to_0.1"] == math.ceil(math.log(0.1 / 3) / math.log(0.9) + 1e-12)
    assert fit["conv/steps_to_0.001"] == 76  # 3 * 0.9**76 = 9.9e-4 < 1e-3 <= 3 * 0.9**75
    assert fit["conv/points"] == 100


def test_power_law_is_sublinear_with_its_exponent():
    series = [(t, 5.0 / t) for t in range(10, 10001, 10)]
    fit = fit_tail(series, tail=0.5, thresholds=[1e-2, 1e-9])
    assert fit["conv/kind"] == "sublinear"
    assert fit["conv/exponent"] == pytest.approx(-1.0, abs=1e-9)
    assert fit["conv/r2_sublinear"] == pytest.approx(1.0)
    assert fit["conv/steps_to_0.01"] == 510 and fit["conv/steps_to_1e-09"] is None


def test_fit_skips_non_positive_and_non_finite_values_and_handles_too_few_points():
    assert fit_tail([(1, 1.0), (2, 0.5)])["conv/kind"] is None
    series = [(t, 2.0**-t) for t in range(1, 41)] + [(41, 0.0), (42, math.nan)]
    assert fit_tail(series)["conv/rate"] == pytest.approx(0.5)


def test_divergence_rule_nan_and_blow_up():
    h = History("train/grad_norm", {})
    h.add({"step": 1, "train/grad_norm": 2.0})
    assert diverged({"step": 2, "train/grad_norm": 3.0}, h, 1e6) is None
    assert "not finite" in diverged({"step": 3, "train/loss": math.nan}, h, 1e6)
    assert "train/grad_norm=3e+06 > 1e+06" in diverged({"step": 4, "train/grad_norm": 3e6}, h, 1e6)


def test_history_best_final_and_targets():
    h = History("train/loss", {"eval/acc": [0.5, 0.9]})
    h.add({"step": 10, "time_s": 1.0, "train/loss": 1.0, "eval/acc": 0.6, "time/elapsed_s": 0.5})
    h.add({"step": 20, "time_s": 2.0, "train/loss": 2.0, "eval/acc": 0.95, "time/elapsed_s": 1.5})
    assert h.final == {"train/loss": 2.0, "eval/acc": 0.95}
    assert h.best == {"train/loss": 1.0, "eval/acc": 0.95}
    assert h.reached == {"eval/acc>=0.5": {"step": 10, "time_s": 0.5}, "eval/acc>=0.9": {"step": 20, "time_s": 1.5}}


def test_sharpness_matches_the_top_eigenvalue_of_a_quadratic():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    eigs = torch.tensor([9.0, 3.0, 2.0, 1.0, 0.5, 0.1], dtype=torch.float64)
    a = q @ torch.diag(eigs) @ q.T
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    loss = 0.5 * x @ a @ x
    assert top_hessian_eigenvalue(loss, [x], iters=200, rtol=1e-12) == pytest.approx(9.0, rel=1e-6)
