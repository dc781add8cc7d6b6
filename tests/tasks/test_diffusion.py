"""The diffusion task: closed-form scores against autograd, the forward process against its SDE,
every sampler reaching the target on a fine grid and converging at its order, a learned score,
the run folder of a real `runner task=diffusion`, and bad input stopped before any work."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hydra.errors import ConfigCompositionException

from runner.validation.validate import ConfigError, validate
from tasks.diffusion.closed_forms import Mixture, gaussian_flow, make_target, w2_gaussian
from tasks.diffusion.orders import FLOOR_MARGIN, error_floor, order_verdict
from tasks.diffusion.samplers import adaptive
from tests.helpers import build_all, compose_cfg

SAMPLERS = ("euler", "heun", "rk4", "dopri5", "ddim", "ddpm", "euler_maruyama", "dpmpp_2m")
PROCESSES = (["task.process=vp"], ["task.process=vp", "task.schedule=cosine"], ["task.process=ve"])
GAUSSIAN = ("task.target=gaussian", "task.cov=[[1.0,0.6],[0.6,0.5]]", "task.mean=[1.0,-0.5]")


def task(*overrides: str):
    torch.manual_seed(0)  # the same noise whatever ran before
    t, opts, _ = build_all(compose_cfg("task=diffusion", "device=cpu", *overrides))
    return t, opts


def targets() -> list[Mixture]:
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    return [make_target("gaussian", 3, "ring", 1, 0, 1, [1.0, -2.0, 0.5], [[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]], cpu),
            make_target("gmm", 2, "ring", 8, 3.0, 0.3, None, None, cpu),
            make_target("gmm", 2, "grid", 9, 2.0, 0.4, None, None, cpu),
            make_target("gmm", 4, "random", 5, 2.0, 0.7, None, None, cpu)]


@pytest.mark.parametrize("index", range(4), ids=["gaussian", "ring", "grid", "random4d"])
def test_noised_scores_match_autograd_of_the_log_density(index):
    target = targets()[index]
    for alpha, sigma in ((1.0, 0.0), (0.8, 0.6), (0.1, 0.995), (1.0, 5.0)):
        p = target.noised(alpha, sigma)
        x = (3 * torch.randn(64, target.dim, dtype=torch.float64)).requires_grad_()
        (grad,) = torch.autograd.grad(p.log_prob(x).sum(), x)
        torch.testing.assert_close(p.score(x.detach()), grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("overrides", PROCESSES, ids=["vp-linear", "vp-cosine", "ve"])
def test_drift_and_diffusion_are_those_of_alpha_and_sigma(overrides):
    """f = d log(alpha)/dt and g^2 = d sigma^2/dt - 2 f sigma^2, against central differences."""
    p = task(*overrides)[0].process
    for t in torch.linspace(p.t_min + 0.01 * (p.t_max - p.t_min), 0.98 * p.t_max, 7, dtype=torch.float64):
        h = 1e-6 * float(t)
        (a1, s1), (a0, s0) = p.alpha_sigma(t + h), p.alpha_sigma(t - h)
        f, g2 = p.coefficients(t)
        alpha, sigma = p.alpha_sigma(t)
        assert float(f) == pytest.approx(float((a1.log() - a0.log()) / (2 * h)), rel=1e-5, abs=1e-7)
        assert float(g2) == pytest.approx(float((s1 ** 2 - s0 ** 2) / (2 * h) - 2 * f * sigma ** 2), rel=1e-5)


@pytest.mark.parametrize("overrides", PROCESSES, ids=["vp-linear", "vp-cosine", "ve"])
def test_forward_sde_simulation_has_the_closed_form_marginals(overrides):
    """Simulating dx = f x dt + g dW from data gives N(alpha m, alpha^2 C + sigma^2 I) at time t."""
    t_, _ = task(*overrides, *GAUSSIAN)
    p, target = t_.process, t_.target
    torch.manual_seed(1)
    x0 = target.sample(20000)
    t_end, n = (0.6 if p.kind == "vp" else 2.0), 400
    x = x0
    for t in torch.linspace(0, t_end, n + 1, dtype=torch.float64)[:-1]:  # Euler-Maruyama, written out
        f, g2 = p.coefficients(t)
        x = x + f * x * (t_end / n) + (g2 * t_end / n).sqrt() * torch.randn_like(x)
    law = target.noised(*p.alpha_sigma(torch.tensor(t_end, dtype=torch.float64)))
    scale = float(law.covs[0].diagonal().max().sqrt())
    torch.testing.assert_close(x.mean(0), law.means[0], atol=0.03 * scale, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), law.covs[0], atol=0.05 * scale ** 2, rtol=0)


def test_gaussian_flow_map_solves_the_probability_flow_ode():
    t_, _ = task(*GAUSSIAN, "task.process=ve")
    p, x = t_.process, t_.target.noised(1.0, 80.0).sample(200)

    def velocity(t, y):
        f, g2 = p.coefficients(t)
        return f * y - 0.5 * g2 * t_.exact_score(y, t)

    ends = torch.tensor([80.0, 0.002], dtype=torch.float64)
    solved = adaptive(velocity, x, ends[0], ends[1], "dopri8", 1e-11)
    torch.testing.assert_close(gaussian_flow(t_.target, p, x, 80.0, 0.002), solved, rtol=0, atol=1e-7)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_on_a_fine_grid_reaches_the_target_within_the_noise_floor(sampler):
    stochastic = sampler in ("ddpm", "euler_maruyama")  # weak order 1 from a reference solve: fewer samples
    t_, _ = task(f"sampler={sampler}", *GAUSSIAN, "task.grid=karras", f"task.steps=[{512 if stochastic else 256}]",
                 f"task.samples={1000 if stochastic else 4000}", "task.ot_samples=1000", "task.ref_factor=1")
    (r,) = list(t_.assess())
    # diff/w2 and its floor are two draws of the same noisy quantity (1,000 points): within 2x;
    # diff/w2_gauss shares its noise with its floor (the reference from the same noise): closer
    assert r["diff/w2"] < 2 * r["diff/w2_floor"], r
    assert r["diff/mmd"] < 2 * r["diff/mmd_floor"] + 1e-3, r
    assert r["diff/w2_gauss"] < 1.5 * r["diff/w2_gauss_floor"] + 0.01, r


# Theory: Euler, DDIM 1; Heun, DPM-Solver++(2M) 2; RK4 4; Euler-Maruyama and DDPM strong order 1
# (the noise is additive). On the Karras grid (dense near t_min, where the score changes fastest)
# every sampler is in its asymptotic regime from 16 steps on; on a uniform grid DDPM and
# DPM-Solver++(2M) get there only beyond 128 steps.
ORDERS = {"euler": 1.0, "ddim": 1.0, "heun": 2.0, "dpmpp_2m": 2.0, "rk4": 4.0, "euler_maruyama": 1.0, "ddpm": 1.0}


@pytest.mark.parametrize("sampler", ORDERS)
def test_fitted_order_is_the_samplers_order(sampler):
    t_, _ = task(f"sampler={sampler}", *GAUSSIAN, "task.grid=karras", "task.steps=[16,32,64,128]",
                 "task.samples=1000", "task.ot_samples=100", "task.ref_factor=2")
    list(t_.assess())
    fit = t_.convergence("diff/err")  # all 4 points (tail 1.0)
    assert fit["conv/kind"] == "sublinear" and fit["conv/points"] == 4 and fit["conv/floor"] is None, fit
    assert fit["conv/order"] == pytest.approx(ORDERS[sampler], abs=0.3), fit
    lo, hi = fit["conv/order_ci"]
    assert lo < fit["conv/order"] < hi and hi - lo < 0.5 and fit["conv/exponent_ci"] == [-hi, -lo]
    assert fit["conv/window"] == [t_.records[0]["diff/nfe"], t_.records[-1]["diff/nfe"]]


# Error series with a known answer for the order fit (NFE doubling from 4): a power law, the same
# with a float64 rounding floor, a learned score's plateau, a flat and a growing one.
NFE = 4.0 * 2.0 ** np.arange(12)


def verdict(err, level=None, reference=False):
    level = np.zeros_like(err) if level is None else level
    k, floor, what = error_floor(err, level, np.full(len(err), reference))
    return k, floor, what, order_verdict(NFE[:k], err[:k])


def test_a_power_law_is_sublinear_with_its_order():
    k, floor, what, v = verdict(3.0 * NFE ** -2.0)
    assert (k, floor, what) == (12, None, None)
    assert v["conv/kind"] == "sublinear" and v["conv/order"] == pytest.approx(2.0, abs=1e-9)
    assert v["conv/order_ci"][0] <= 2.0 <= v["conv/order_ci"][1] and v["conv/window"] == [4.0, 8192.0]


def test_a_rounding_floor_and_the_points_within_ten_times_of_it_are_left_out():
    level = np.full(12, 6e-15)
    wobble = 1 + 0.3 * np.sin(np.arange(12))  # rounding: irregular around its level
    err = np.maximum(NFE ** -4.0, 6e-15 * wobble)
    k, floor, what, v = verdict(err, level)
    assert NFE[k - 1] ** -4.0 > FLOOR_MARGIN * 6e-15 >= NFE[k] ** -4.0 and floor == 6e-15 and "rounding" in what
    assert v["conv/kind"] == "sublinear" and v["conv/order"] == pytest.approx(4.0, abs=1e-6)


def test_a_plateau_where_the_error_stopped_falling_is_a_floor():
    """A learned score: the sampler's error falls to the score's own error E and stays there; only
    the points above 10 E are the discretisation's (3 here), fitted for the order."""
    err = 2.0 * NFE ** -1.0 + 0.01
    k, floor, what, v = verdict(err)
    assert floor == pytest.approx(0.01, rel=0.1) and "plateau" in what and err[k - 1] > 10 * floor >= err[k]
    assert k == 3 and v["conv/kind"] == "sublinear" and v["conv/order"] == pytest.approx(1.0, abs=0.1)
    k, floor, what, v = verdict(3.0 * NFE ** -1.0)  # still falling at the end: no plateau
    assert (k, floor, what) == (12, None, None)


def test_flat_growing_and_too_few_points_get_their_own_kinds():
    assert order_verdict(NFE[:6], np.full(6, 0.3) * (1 + 1e-3 * np.arange(6)))["conv/kind"] == "stalled"
    grows = order_verdict(NFE[:6], 1e-3 * NFE[:6] ** 0.5)
    assert grows["conv/kind"] == "diverging" and grows["conv/order"] == pytest.approx(-0.5)
    few = order_verdict(NFE[:2], NFE[:2] ** -1.0)
    assert few["conv/kind"] == "none" and few["conv/order"] is None and "3 needed" in few["conv/reason"]
    noise = order_verdict(NFE[:8], 0.1 * (1 + 0.3 * (-1.0) ** np.arange(8)))  # swings, no trend
    assert noise["conv/kind"] == "none" and noise["conv/order"] is None, noise


def test_a_floor_under_every_point_leaves_the_whole_series_to_say_stalled():
    err = np.full(6, 0.375) * (1 + 1e-3 * np.arange(6))
    k, floor, what = error_floor(err, np.zeros(6), np.zeros(6, bool))
    assert (k, floor, what) == (6, None, None) and order_verdict(NFE[:6], err)["conv/kind"] == "stalled"


def test_an_adaptive_solvers_error_reaches_float64_rounding_and_the_floor_is_left_out():
    """dopri5 on the Gaussian target (closed-form reference, exact but for rounding): the error
    falls to ~5e-15 at tolerance 4096^-4 and stops; those points are the floor."""
    t_, _ = task("sampler=dopri5", *GAUSSIAN, "task.steps=[64,128,256,512,1024,2048,4096,8192]",
                 "task.samples=300", "task.ot_samples=50")
    records = list(t_.assess())
    fit = t_.convergence("diff/err", 1.0)
    errors = [r["diff/err"] for r in records]
    assert min(errors) < 2e-14 and fit["conv/floor"] is not None and fit["conv/floor_level"] < 1e-13, errors
    kept = [e for r, e in zip(records, errors) if r["diff/nfe"] < fit["conv/floor"]]
    assert min(kept) > FLOOR_MARGIN * fit["conv/floor_level"] and "rounding" in fit["conv/reason"], fit
    assert fit["conv/kind"] == "sublinear" and fit["conv/order"] > 4, fit


def test_a_briefly_learned_score_gets_no_order():
    """300 steps of score matching: the sampler's error, against the exact dynamics, settles at
    the learned flow's own (~1 here) as the step count grows: no order is claimed."""
    t_, opts = task("model=mlp", "model.hidden=[32]", "optim=adam", "optim.lr=3e-3", *GAUSSIAN, "sampler=heun",
                    "task.steps=[4,8,16,32,64,128]", "task.samples=500", "task.ot_samples=100", "task.batch_size=128")
    for _ in range(300):
        t_.train_step(opts, measure=False)
    list(t_.assess())
    fit = t_.convergence("diff/err", 0.5)
    assert fit["conv/kind"] in ("stalled", "none") and fit["conv/order"] is None, fit


def test_dopri5_error_follows_its_tolerance():
    t_, _ = task("sampler=dopri5", *GAUSSIAN, "task.steps=[4,8,16]", "task.samples=1000", "task.ot_samples=100")
    records = list(t_.assess())
    errors = [r["diff/err"] for r in records]  # local error control: the global error tracks, not meets, tol
    assert errors[0] > 10 * errors[1] > 100 * errors[2] and errors[2] < 16.0 ** -4, errors
    assert records[0]["diff/nfe"] < records[-1]["diff/nfe"]


def test_common_random_numbers_every_step_count_starts_from_the_same_noise():
    t_, _ = task("sampler=ddpm", *GAUSSIAN, "task.steps=[2,4]", "task.samples=200", "task.ot_samples=50")
    seen = []
    t_.sampler = lambda dyn, x, grid, bm: (seen.append((x.clone(), bm(-grid[0], -grid[-1]))) or x, 0)
    list(t_.assess())
    (x1, w1), (x2, w2) = seen
    assert torch.equal(x1, x2) and torch.equal(w1, w2)


def test_a_learned_score_trains_by_denoising_score_matching_then_samples():
    t_, opts = task("model=mlp", "model.hidden=[64,64]", "optim=adam", "optim.lr=3e-3", *GAUSSIAN,
                    "task.steps=[16,64]", "task.samples=2000", "task.ot_samples=500", "task.batch_size=256")
    assert set(t_.models()) == {"score"} and t_.total_steps == 2000
    torch.manual_seed(0)
    losses = [float(t_.train_step(opts, measure=True)["train/loss"]) for _ in range(400)]
    assert sum(losses[-50:]) / 50 < 0.8 * sum(losses[:20]) / 20
    r16, r64 = list(t_.assess())
    assert math.isfinite(r64["diff/err"]) and r64["diff/w2_gauss"] < 0.5  # the score is learned, not exact


def test_runner_run_writes_the_grid_the_fitted_order_and_pictures(tmp_path):
    from runner.run.metrics import read_records
    from tests.run.test_cli import runner, summary

    proc = runner("task=diffusion", "sampler=heun", "task.steps=[4,8,16,32]", "task.samples=2000",
                  "task.ot_samples=300", "logger=none", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = read_records(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [r["diff/steps"] for r in records] == [4, 8, 16, 32]
    assert [r["diff/nfe"] for r in records] == [8, 16, 32, 64]  # Heun: two score evaluations per step
    assert {"diff/err", "diff/err_floor", "diff/w2", "diff/w2_floor", "diff/mmd", "diff/mmd_floor"} <= set(records[0])
    s = summary(tmp_path)
    conv = s["convergence"]
    assert s["status"] == "completed" and conv["conv/metric"] == "diff/err" and conv["conv/x"] == "diff/nfe"
    # the task's verdict replaces the runner's step fit whole: its keys, and no others
    assert set(conv) == {f"conv/{k}" for k in (
        "metric", "x", "kind", "model", "rate", "rate_ci", "order", "order_ci", "exponent", "exponent_ci", "t0", "se",
        "change", "r2", "points", "window", "floor", "floor_level", "local", "law", "reason")}, sorted(conv)
    assert conv["conv/kind"] == "sublinear" and conv["conv/model"] == "power" and conv["conv/rate"] is None
    assert conv["conv/points"] == 3 and conv["conv/window"] == [16, 64]  # metrics.fit_tail=0.5 of 4 points, 3 at least
    assert conv["conv/order"] == pytest.approx(2.0, abs=0.5) and conv["conv/exponent"] == -conv["conv/order"]
    lo, hi = conv["conv/order_ci"]
    assert lo < conv["conv/order"] < hi and conv["conv/se"] > 0 and conv["conv/floor"] is None
    assert [e[0] for e in conv["conv/local"]] == pytest.approx([8 * 2 ** 0.5, 16 * 2 ** 0.5, 32 * 2 ** 0.5])
    assert conv["conv/reason"].startswith("sublinear: order ") and "over NFE 16-64 (3 points)" in conv["conv/reason"]
    assert f"verdict on diff/err: {conv['conv/reason']}" in " ".join(proc.stdout.split())  # the terminal says it too
    for key in ("diff/samples", "diff/error_vs_nfe"):
        assert (tmp_path / f"{key[5:]}.png").stat().st_size > 10_000 and s["figures"][key].endswith(".png")


@pytest.mark.parametrize("overrides, needle", [
    (["task.steps=[8,4,16]"], "task.steps=[8, 4, 16]: the step counts must be strictly increasing"),
    (["task.steps=[4,4]"], "strictly increasing"),
    (["task.steps=[0,4]"], "task.steps=[0, 4]: must be an integer >= 1 or a list of integers >= 1"),
    (["task.target=gaussian", "task.cov=[[1.0,2.0],[2.0,1.0]]"], "task.cov=[[1.0, 2.0], [2.0, 1.0]]: not positive definite"),
    (["task.target=gaussian", "task.cov=[[1.0,0.5],[0.0,1.0]]"], "not symmetric"),
    (["task.target=gaussian", "task.cov=[1.0,2.0,3.0]"], "task.cov=[1.0, 2.0, 3.0]: null, a number, a list of 2 variances"),
    (["task.target=gaussian", "task.mean=[1.0]"], "task.mean=[1.0]: null, a number or a list of task.dim=2 numbers"),
    (["task.target=laplace"], "task.target='laplace': allowed: gaussian, gmm"),
    (["task.process=subvp"], "task.process='subvp': allowed: vp, ve"),
    (["task.grid=log"], "task.grid='log': allowed: uniform, quadratic, karras"),
    (["task.mixture=ring", "task.dim=3"], "ring and grid are 2-D"),
    (["task.mixture=grid", "task.components=8"], "a grid needs a square number"),
    (["task.t_max=2.0"], "task.t_max=2.0: the vp linear schedule needs t_max <= 1.0"),
    (["task.ot_samples=20000"], "task.ot_samples=20000: at most task.samples=10000"),
    (["sampler.method=midpoint2"], "sampler.method='midpoint2': allowed: euler, midpoint, heun2, heun3, rk4, dopri5"),
    (["sampler=euler_maruyama", "sampler.method=heun"], "sampler.method='heun': allowed: euler, milstein, srk"),
])
def test_bad_input_is_stopped_before_any_work(overrides, needle):
    cfg = compose_cfg("task=diffusion", *overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg, dict(cfg.hydra.runtime.choices))
    assert any(needle in p for p in err.value.problems), err.value.problems


def test_unknown_sampler_and_a_sampler_on_another_task_are_errors():
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg("task=diffusion", "sampler=heun3")
    assert "sampler/heun3" in str(err.value) and "dpmpp_2m" in str(err.value.__cause__ or err.value)
    cfg = compose_cfg("task=digits", "sampler=heun")
    with pytest.raises(ConfigError) as e:
        validate(cfg, dict(cfg.hydra.runtime.choices))
    assert any(p.startswith("sampler=heun: task=digits takes no sampler") for p in e.value.problems), e.value.problems


def test_closed_form_gaussian_w2_is_zero_on_the_target_and_exact_for_a_shift():
    torch.manual_seed(0)
    z = torch.randn(4000, 2, dtype=torch.float64)
    x = (z - z.mean(0)) @ torch.linalg.cholesky(torch.cov(z.T)).inverse().T  # mean 0, covariance I exactly
    eye = torch.eye(2, dtype=torch.float64)
    assert w2_gaussian(x, torch.zeros(2, dtype=torch.float64), eye) == pytest.approx(0.0, abs=1e-6)
    assert w2_gaussian(x + torch.tensor([3.0, 4.0], dtype=torch.float64), torch.zeros(2, dtype=torch.float64),
                       eye) == pytest.approx(5.0, abs=1e-6)
