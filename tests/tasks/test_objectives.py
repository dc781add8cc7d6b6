"""task=objective (tasks/objectives/): each optimum against an independent solver, gradients and
Hessians against autograd and finite differences, float64 end to end, every optimizer stepped on
every problem, GD's measured rate on quadratics against (kappa-1)/(kappa+1), the theory step sizes
and their refusals, the cache, and Reddi et al.'s example.

    pytest tests/tasks/test_objectives.py          # ~25 s on a CPU core
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from runner.validation.validate import ConfigError, validate
from tests.helpers import OPTIMS, ROOT, build_all, compose_cfg, run_main

PROBLEMS = sorted(p.stem for p in (ROOT / "conf/problem").glob("*.yaml"))
DATA = ("least_squares", "logistic")


@pytest.fixture
def cache(tmp_path) -> list[str]:
    return [f"problem.cache={tmp_path / 'cache'}"]


def objective(*overrides: str):
    torch.manual_seed(0)
    cfg = compose_cfg("task=objective", "device=cpu", *overrides)
    validate(cfg, cfg.hydra.runtime.choices)
    return build_all(cfg)


def problem(name: str, *overrides: str, tmp: Path | None = None):
    cached = [f"problem.cache={tmp}"] if tmp is not None and name in DATA else []
    return objective(f"problem={name}", *cached, *overrides)[0].problem


# --- optima against independent solvers ------------------------------------------------------------


@pytest.mark.parametrize("reg", [0.0, 0.1])
def test_least_squares_optimum_is_lstsq(reg, tmp_path):
    p = problem("least_squares", f"problem.reg={reg}", tmp=tmp_path)
    n, d = p.a_np.shape
    a = np.vstack([p.a_np / np.sqrt(n), np.sqrt(reg) * np.eye(d)])  # ridge as one least-squares system
    b = np.concatenate([p.b_np / np.sqrt(n), np.zeros(d)])
    x = np.linalg.lstsq(a, b, rcond=None)[0]
    np.testing.assert_allclose(p.x_star.numpy(), x, rtol=1e-11, atol=1e-13)
    assert p.f_star == pytest.approx(0.5 * float(np.sum((a @ x - b) ** 2)), rel=1e-13)
    eigs = np.linalg.eigvalsh(a.T @ a)
    assert (p.constants["mu"], p.constants["L"]) == pytest.approx((eigs[0], eigs[-1]), rel=1e-12)


def test_logistic_optimum_agrees_with_scipy_and_gradient_vanishes(tmp_path):
    from scipy.optimize import minimize

    p = problem("logistic", tmp=tmp_path)
    f = lambda x: float(np.logaddexp(0, -p.b_np * (p.a_np @ x)).mean() + p.reg / 2 * x @ x)  # noqa: E731
    res = minimize(f, np.zeros(p.a_np.shape[1]), jac=lambda x: p.grad_hess(x)[0], hess=lambda x: p.grad_hess(x)[1],
                   method="trust-exact", options={"gtol": 1e-13})
    np.testing.assert_allclose(p.x_star.numpy(), res.x, rtol=1e-7, atol=1e-9)
    assert p.f_star == pytest.approx(res.fun, rel=1e-13)
    x = p.x_star.clone().requires_grad_(True)
    assert float(torch.autograd.grad(p.value([x]), x)[0].norm()) < 1e-14
    hess = torch.autograd.functional.hessian(lambda v: p.value([v]), p.x_star)
    eigs = torch.linalg.eigvalsh(hess)
    assert (p.constants["mu"], p.constants["L"]) == pytest.approx((float(eigs[0]), float(eigs[-1])), rel=1e-10)


def test_the_solve_is_cached_by_its_parameters(tmp_path):
    first = problem("logistic", tmp=tmp_path)
    files = sorted((tmp_path).glob("*.npz"))
    assert len(files) == 1
    again = problem("logistic", tmp=tmp_path)
    assert torch.equal(first.x_star, again.x_star) and sorted(tmp_path.glob("*.npz")) == files
    problem("logistic", "problem.reg=0.1", tmp=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2


@pytest.mark.parametrize("name", ["quadratic", "rosenbrock", "reddi", "factorisation"])
def test_known_minimisers(name):
    p = problem(name, *(["problem.dim=5"] if name == "rosenbrock" else []))
    if name == "quadratic":
        star = [torch.zeros(20, dtype=torch.float64)]
    elif name == "rosenbrock":
        star = [torch.ones(5, dtype=torch.float64)]
    elif name == "reddi":
        star = [torch.tensor([-1.0], dtype=torch.float64)]
    else:  # any balanced factor pair of M
        u, s, vt = torch.linalg.svd(p.m)
        r = int(p.constants["rank"])
        star = [u[:, :r] * s[:r].sqrt(), vt[:r].T * s[:r].sqrt()]
        assert float(s[r]) < 1e-12, "M is planted of rank `rank`"
    assert float(p.subopt(star)) == pytest.approx(0.0, abs=1e-15)
    assert float(p.distance(star)) == pytest.approx(0.0, abs=1e-7)


def test_quadratic_spectrum_and_null_space():
    p = problem("quadratic", "problem.dim=8", "problem.kappa=100", "problem.zeros=3", "problem.spectrum=geometric")
    eigs = torch.linalg.eigvalsh(p.a)
    np.testing.assert_allclose(eigs.numpy(), np.concatenate([np.zeros(3), np.geomspace(0.01, 1, 5)]), atol=1e-14)
    x = p.null @ torch.randn(3, dtype=torch.float64)  # any point of the null space is a minimiser
    assert float(p.value([x])) < 1e-30 and float(p.distance([x])) < 1e-14
    assert p.constants["mu"] == 0.0 and "kappa" not in p.constants


# --- gradients ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROBLEMS)
def test_gradient_matches_finite_differences(name, tmp_path):
    p = problem(name, tmp=tmp_path)
    torch.manual_seed(1)
    xs = [0.5 * torch.randn(s, dtype=torch.float64) for s in p.shapes]
    xs = [x.clamp(-0.9, 0.9) for x in xs] if name == "reddi" else xs
    grads = torch.autograd.grad(p.value([x.requires_grad_(True) for x in xs]), xs)
    h = 1e-6
    for x, g in zip(xs, grads):
        for i in range(min(x.numel(), 12)):
            e = torch.zeros_like(x).view(-1)
            e[i] = h
            e = e.view_as(x)
            plus = [y + e if y is x else y for y in xs]
            minus = [y - e if y is x else y for y in xs]
            fd = (p.value(plus) - p.value(minus)) / (2 * h)
            assert float(g.view(-1)[i]) == pytest.approx(float(fd.detach()), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("name", DATA)
def test_the_solvers_gradient_and_hessian_are_autograds(name, tmp_path):
    p = problem(name, "problem.reg=0.05", tmp=tmp_path)
    x = torch.randn(p.shapes[0], dtype=torch.float64)
    g, h = p.grad_hess(x.numpy())
    xg = x.clone().requires_grad_(True)
    np.testing.assert_allclose(g, torch.autograd.grad(p.value([xg]), xg)[0].numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h, torch.autograd.functional.hessian(lambda v: p.value([v]), x).numpy(),
                               rtol=1e-12, atol=1e-15)


def test_least_squares_subopt_is_the_exact_quadratic_form(tmp_path):
    p = problem("least_squares", tmp=tmp_path)
    x = p.x_star + 1e-3 * torch.randn(p.shapes[0], dtype=torch.float64)
    assert float(p.subopt([x])) == pytest.approx(float(p.value([x])) - p.f_star, rel=1e-6)


# --- float64 end to end; every optimizer on every problem --------------------------------------------


def test_float64_end_to_end_whatever_the_precision(capsys, tmp_path):
    task, opts, rt = objective("precision=fp32")
    assert rt.dtype is None  # fp32 was asked: the task computes in float64 all the same
    assert all(p.dtype == torch.float64 for p in task.iterate.parameters())
    out = task.train_step(opts, measure=True)
    assert all(v.dtype == torch.float64 for v in out.values() if isinstance(v, torch.Tensor))
    code, _ = run_main(capsys, "task=objective", "task.steps=40", "logger=none", f"hydra.run.dir={tmp_path}")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert code == 0 and summary["precision"] == "fp64"
    assert summary["constants"]["kappa"] == pytest.approx(10.0) and summary["constants"]["L"] == pytest.approx(1.0)


def stepped(name: str, optim: str, cache: list[str], steps: int = 5):
    extra = cache if name in DATA else []
    if name == "rosenbrock":  # curvature ~1.7 L at the classic start: a little below the optimizers' defaults
        extra = ["optim.lr=0.01"]
    task, opts, _ = objective(f"problem={name}", f"optim={optim}", f"task.steps={steps}", *extra)
    start = [p.detach().clone() for p in task.xs]
    records = [task.train_step(opts, measure=True) for _ in range(steps)]
    return task, opts, start, records


@pytest.mark.parametrize("optim", OPTIMS)
@pytest.mark.parametrize("name", PROBLEMS)
def test_every_optimizer_steps_every_problem(name, optim, cache):
    if (name, optim) == ("reddi", "adahessian"):  # linear losses: no Hessian to estimate, refused
        with pytest.raises(ConfigError, match="needs second derivatives.*Reddi are linear"):
            stepped(name, optim, cache)
        return
    task, opts, start, records = stepped(name, optim, cache)
    for r in records:
        assert {"obj/subopt", "obj/grad_norm", "train/loss", "train/update_norm"} <= set(r)
        assert all(torch.isfinite(torch.as_tensor(v)) for v in r.values())
    assert any(not torch.equal(a, p) for a, p in zip(start, task.xs)), "the optimizer moved the iterate"
    split = opts["model"].split
    if optim == "muon":  # Muon on the 2-D variables, its auxiliary optimizer on the rest
        assert split == ({"matrix": (2, 105), "aux": (0, 0)} if name == "factorisation"
                         else {"matrix": (0, 0), "aux": (1, sum(int(np.prod(s)) for s in task.problem.shapes))})


@pytest.mark.parametrize("name", PROBLEMS)
def test_every_problem_runs_through_the_entry_point(name, capsys, tmp_path):
    extra = [f"problem.cache={tmp_path / 'cache'}"] if name in DATA else []
    code, out = run_main(capsys, "task=objective", f"problem={name}", "task.steps=30", "logger=none",
                         f"hydra.run.dir={tmp_path / 'run'}", *extra)
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert code == 0 and summary["status"] == "completed", out[-2000:]
    assert "obj/subopt" in summary["final"] and summary["convergence"]["conv/metric"] == "obj/subopt"


# --- rates, theory step sizes --------------------------------------------------------------------------


@pytest.mark.parametrize("lr", ["1/L", "2/(mu+L)"])
def test_gd_rate_on_a_quadratic_is_the_textbook_one(lr):
    """Half the eigenvalues at mu, half at L: f_t is exactly f_0 q^(2t), q = max |1 - lr lambda|."""
    task, opts, _ = objective("problem.spectrum=extremes", "problem.kappa=50", f"task.theory={{lr: '{lr}'}}")
    kappa = task.constants["kappa"]
    q = 1 - 1 / kappa if lr == "1/L" else (kappa - 1) / (kappa + 1)
    f = [float(task.train_step(opts, measure=True)["obj/subopt"]) for _ in range(60)]
    ratios = np.array(f[1:]) / np.array(f[:-1])
    np.testing.assert_allclose(ratios[5:], q**2, rtol=1e-10)  # from step 5: the fast modes of 1/L are gone


def test_gd_fitted_rate_through_the_runner(capsys, tmp_path):
    code, _ = run_main(capsys, "task=objective", "problem.kappa=20", "task.theory={lr: 1/L}", "task.steps=1500",
                       "log_every=10", "logger=none", f"hydra.run.dir={tmp_path}")
    summary = json.loads((tmp_path / "summary.json").read_text())
    conv = summary["convergence"]
    assert code == 0 and conv["conv/kind"] == "linear"
    assert summary["constants"]["theory"]["lr"] == pytest.approx(1.0)
    assert conv["conv/rate"] == pytest.approx((1 - 1 / 20) ** 2, abs=1e-4)  # a linear spectrum: the next mode fades


def test_theory_values_reach_the_optimizer():
    task, opts, _ = objective("optim=momentum", "problem.kappa=16",
                              "task.theory={lr: '4/(sqrt(L)+sqrt(mu))**2', momentum: '((sqrt(kappa)-1)/(sqrt(kappa)+1))**2'}")
    group = opts["model"].optimizers[0].param_groups[0]
    assert group["lr"] == pytest.approx(4 / (1 + 0.25) ** 2) and group["momentum"] == pytest.approx((3 / 5) ** 2)
    assert task.constants["theory"] == {"lr": group["lr"], "momentum": group["momentum"]}


@pytest.mark.parametrize("overrides, needles", [
    (["task.theory={lr: '1/(L'}"], ["task.theory.lr='1/(L'", "not a valid expression"]),
    (["task.theory={lr: 1/nu}"], ["nu not defined by problem Quadratic", "defined: L, dim, kappa, mu"]),
    (["task.theory={lr: \"__import__('os')\"}"], ["task.theory.lr", "not allowed"]),
    (["task.theory={betas: 1/L}"], ["task.theory.betas: the optimizer has no key 'betas'"]),
    (["problem=reddi", "task.theory={lr: 1/L}"], ["L not defined by problem Reddi", "defined: C"]),
    (["task.batch_size=8"], ["task.batch_size=8", "no data rows"]),
    (["problem.spectrum=flat", "problem.zeros=20"], ["problem.spectrum='flat': allowed: linear, geometric, extremes",
                                                     "problem.zeros=20: must be below problem.dim=20"]),
    (["task.theory={lr: 2}"], ["task.theory={'lr': 2}", "a mapping to texts"]),
])
def test_bad_input_is_refused_before_work(overrides, needles):
    with pytest.raises(ConfigError) as e:
        objective(*overrides)
    text = "\n".join(e.value.problems)
    assert all(n in text for n in needles), text


def test_a_theory_value_the_problem_cannot_give_is_a_config_error():
    with pytest.raises(ConfigError, match=r"task.theory.lr='1/mu' on this problem \(mu=0, .*ZeroDivisionError"):
        objective("problem.zeros=2", "task.theory={lr: 1/mu}")


# --- stochastic gradients, the online problem ---------------------------------------------------------


def test_minibatches_and_noise_leave_the_measured_objective_exact(cache):
    task, opts, _ = objective("problem=least_squares", "task.batch_size=16", "task.noise=0.1", *cache)
    r = task.train_step(opts, measure=True)
    assert float(r["train/loss"]) != pytest.approx(float(r["obj/subopt"]) + task.problem.f_star, rel=1e-3)
    assert float(r["train/grad_norm"]) != pytest.approx(float(r["obj/grad_norm"]), rel=1e-3)


def test_stochastic_draws_come_from_the_runs_own_stream_which_a_checkpoint_carries(cache):
    """Rows and noise from the task's generator (runner/task/rng.py), not the global one: draws from
    the global generator between steps change nothing, and the stream's state in `state_dict()`
    continues it (a resumed run draws what the uninterrupted one draws)."""
    def losses(task, opts, k, meddle=False):
        out = []
        for _ in range(k):
            if meddle:
                torch.randn(100)
            out.append(float(task.train_step(opts, measure=True)["train/loss"]))
        return out

    args = ("problem=least_squares", "task.batch_size=4", "task.noise=0.1", *cache)
    task, opts, _ = objective(*args)
    assert losses(task, opts, 3) + losses(task, opts, 3) == losses(*objective(*args)[:2], 6, meddle=True)
    state, optim_state = task.state_dict(), opts["model"].state_dict()
    params = [p.detach().clone() for p in task.xs]
    ahead = losses(task, opts, 3)
    task.load_state_dict(state)
    opts["model"].load_state_dict(optim_state)
    with torch.no_grad():
        for p, v in zip(task.xs, params):
            p.copy_(v)
    assert losses(task, opts, 3) == ahead


def test_reddi_adam_fails_amsgrad_converges():
    """Reddi et al. 2018 Theorem 1 at C = 3: beta1 = 0, beta2 = 1/(1 + C^2) = 0.1."""
    ends = {}
    for amsgrad in (False, True):
        task, opts, _ = objective("problem=reddi", "optim=adam", "optim.betas=[0.0,0.1]", "optim.lr=0.1",
                                  *(["+optim.amsgrad=true"] if amsgrad else []))
        for _ in range(1500):
            r = task.train_step(opts, measure=True)
        ends[amsgrad] = (float(task.xs[0].detach()), float(r["obj/regret_avg"]))
    assert ends[False][0] > 0.9 and ends[False][1] > 0.6  # Adam near x = +1: average regret ~ 2(C-2)/3
    assert ends[True][0] < -0.9 and ends[True][1] < 0.15
