"""The GAN task's games: the field and its Jacobian against autograd and finite differences,
each game's equilibrium, the textbook behaviour of the four schemes on the bilinear game, the
counted gradient evaluations, two time scales, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from runner.validation.validate import ConfigError, validate
from tests.helpers import build_all, compose_cfg


def game(*overrides: str):
    torch.manual_seed(0)
    return build_all(compose_cfg("task=gan", "device=cpu", *overrides))


def run(task, opts, steps):
    return [task.train_step(opts, measure=True) for _ in range(steps)]


def put(task, z: torch.Tensor) -> None:
    """Move the players to the flat point z."""
    with torch.no_grad():
        for p, v in zip(task.params, z.split([p.numel() for p in task.params])):
            p.copy_(v.view_as(p))


@pytest.mark.parametrize("overrides", [["task.dim=3", "task.sv_max=2"],
                                       ["task.game=dirac"], ["task.game=dirac", "task.loss=nonsaturating"],
                                       ["task.game=dirac", "task.loss=wgan"], ["task.game=dirac", "task.loss=wgan_gp"],
                                       ["task.game=dirac", "task.reg=r1", "task.gamma=0.3"]])
def test_field_and_jacobian_match_finite_differences(overrides):
    task, _, _ = game(*overrides)
    z, h = task._point().clone(), 1e-6
    n_gen = task.players["generator"].z.numel()

    def field(v):
        put(task, v)
        return torch.cat(task.field()[0])

    def loss_pair(v):
        put(task, v)
        return task.game.losses(task.players)

    f = field(z)
    for i in range(len(z)):  # F_i is the derivative of the owning player's loss along coordinate i
        e = torch.zeros_like(z)
        e[i] = h
        which = 0 if i < n_gen else 1
        fd = (loss_pair(z + e)[which] - loss_pair(z - e)[which]) / (2 * h)
        assert float(f[i]) == pytest.approx(float(fd.detach()), rel=1e-6, abs=1e-8)
    fd_jac = torch.stack([-(field(z + h * torch.eye(len(z))[j]) - field(z - h * torch.eye(len(z))[j])) / (2 * h)
                          for j in range(len(z))], 1)
    put(task, z)
    torch.testing.assert_close(task.jacobian(), fd_jac, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("overrides", [["task.dim=4", "task.sv_min=0.5", "task.sv_max=3"], ["task.game=dirac"],
                                       ["task.game=dirac", "task.loss=wgan"], ["task.game=dirac", "task.reg=r2", "task.gamma=1"]])
def test_the_field_vanishes_at_the_equilibrium(overrides):
    task, _, _ = game(*overrides)
    put(task, torch.cat(task.game.eq))
    assert all(float(g.abs().max()) < 1e-12 for g in task.field()[0])


def test_bilinear_schemes_behave_as_theory_says():
    """lr 0.1, A = 1 (dim 1): GDA spirals out at |1 + i eta| = sqrt(1.01) per step, alternating GDA
    cycles, extragradient contracts at sqrt(1 - eta^2 + eta^4), optimistic GDA converges."""
    rates = {}
    for scheme in ("simultaneous", "alternating", "extragradient", "optimistic"):
        task, opts, _ = game(f"task.scheme={scheme}")
        d = [float(r["gan/dist_to_eq"]) for r in run(task, opts, 400)]
        rates[scheme] = (d[-1] / d[-201]) ** (1 / 200)
    assert rates["simultaneous"] == pytest.approx(math.sqrt(1.01), rel=1e-9)
    assert rates["alternating"] == pytest.approx(1.0, abs=2e-3)
    assert rates["extragradient"] == pytest.approx(math.sqrt(1 - 0.01 + 1e-4), rel=1e-9)
    assert rates["optimistic"] < 0.999


def test_extragradient_counts_two_field_evaluations_per_step_and_restores_adam_state():
    task, opts, _ = game("task.scheme=extragradient", "optim=adam")
    records = run(task, opts, 5)
    assert [r["train/grad_evals"] for r in records] == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert all(o.optimizers[0].state_dict()["state"][0]["step"] == 5 for o in opts.values())
    task, opts, _ = game("task.scheme=simultaneous", "task.d_steps=3")
    assert [r["train/grad_evals"] for r in run(task, opts, 2)] == [3.0, 6.0]


def test_r1_makes_the_dirac_gan_converge_and_its_jacobian_attracting():
    task, opts, _ = game("task.game=dirac", "task.reg=r1", "task.gamma=0.3", "optim.lr=0.1", "task.jacobian_every=1")
    records = run(task, opts, 1500)
    assert float(records[-1]["gan/dist_to_eq"]) < 1e-6
    assert float(records[-1]["gan/jac_max_real"]) == pytest.approx(-0.15, abs=1e-3)  # -gamma/2 at (0, 0)
    task, opts, _ = game("task.game=dirac", "optim.lr=0.1")
    assert float(run(task, opts, 1500)[-1]["gan/dist_to_eq"]) > 0.1  # unregularised: no convergence


def test_two_time_scales_and_a_separate_discriminator_optimizer():
    _, opts, _ = game("task.lr_ratio=4", "optim.lr=0.05", "+optim@optim_discriminator=adam")
    assert type(opts["generator"].optimizers[0]).__name__ == "SGD"
    assert type(opts["discriminator"].optimizers[0]).__name__ == "Adam"
    assert opts["generator"].lr == pytest.approx(0.05)
    assert opts["discriminator"].lr == pytest.approx(4 * 1e-3)  # Adam's own lr, times the ratio


@pytest.mark.parametrize("override, needle", [
    ("task.game=wgan2d", "task.game='wgan2d': allowed: bilinear, dirac, mog"),
    ("task.scheme=extragradiant", "task.scheme='extragradiant': allowed: simultaneous, alternating, extragradient, optimistic"),
    ("task.lr_ratio=-1", "task.lr_ratio=-1: must be a finite number > 0"),
    ("task.reg=r1", "the bilinear game has no GAN loss or penalty"),
])
def test_bad_input_is_stopped_before_any_work(override, needle):
    cfg = compose_cfg("task=gan", override)
    with pytest.raises(ConfigError) as err:
        validate(cfg, dict(cfg.hydra.runtime.choices))
    assert any(needle in p for p in err.value.problems), err.value.problems


# ---- the mixture-of-Gaussians GAN -------------------------------------------------------------
MOG = ("task.game=mog", "model=mlp", "model.hidden=[8]", "optim=adam")


def fixed_batch_mog(*overrides: str):
    """A small mog game in float64 with its minibatch (and WGAN-GP's interpolation) frozen."""
    task, opts, rt = game(*MOG, *overrides)
    for m in task.players.values():
        m.double()
    batch = tuple(t.double() for t in task.game.sample())
    task.game.sample = lambda: batch
    return task, opts


@pytest.mark.parametrize("overrides", [[], ["task.loss=nonsaturating", "task.reg=r1", "task.gamma=1"],
                                       ["task.loss=wgan_gp"], ["task.reg=r2", "task.gamma=0.5"]])
def test_mog_field_and_jacobian_match_finite_differences(overrides):
    task, _ = fixed_batch_mog(*overrides)
    z, h = task._point().clone(), 1e-6
    n_gen = sum(p.numel() for p in task.players["generator"].parameters())

    def field(v):
        put(task, v)  # the batch holds WGAN-GP's interpolation weights too: frozen with it
        return torch.cat([g.reshape(-1) for g in task.field(task.game.sample())[0]])

    def loss_pair(v):
        put(task, v)
        return task.game.losses(task.players, task.game.sample())

    f = field(z)
    for i in torch.randperm(len(z))[:12].tolist():
        e = torch.zeros_like(z)
        e[i] = h
        fd = (loss_pair(z + e)[i >= n_gen] - loss_pair(z - e)[i >= n_gen]) / (2 * h)
        assert float(f[i]) == pytest.approx(float(fd.detach()), rel=1e-5, abs=1e-8)
    cols = torch.randperm(len(z))[:6].tolist()
    put(task, z)
    jac = task.jacobian()
    for j in cols:
        e = torch.zeros_like(z)
        e[j] = h
        torch.testing.assert_close(jac[:, j], -(field(z + e) - field(z - e)) / (2 * h), rtol=1e-5, atol=1e-7)


def test_mog_jacobian_estimate_beyond_jacobian_max_matches_the_exact_eigenvalues():
    task, opts = fixed_batch_mog()
    assert task.n_params <= task.jacobian_max
    exact = {k: float(v) for k, v in task.jacobian_eigs().items()}
    task.jacobian_max, task.jacobian_iters = 0, 200
    estimate = task.jacobian_eigs()
    assert estimate.keys() == exact.keys()
    for k in exact:
        assert estimate[k] == pytest.approx(exact[k], rel=1e-3), (k, exact, estimate)


class Sampler(torch.nn.Module):
    """A stand-in generator that draws from a given sampler (the real data, or one mode)."""

    def __init__(self, draw):
        super().__init__()
        self.draw = draw

    def forward(self, noise):
        return self.draw(len(noise))


@pytest.mark.parametrize("mixture, modes", [("ring", 8), ("grid", 25)])
def test_mog_modes_and_quality_follow_the_3_sigma_convention(mixture, modes):
    task, _, _ = game(*MOG, f"task.mixture={mixture}")
    g = task.game
    task.players["generator"] = Sampler(g.real)  # a perfect generator
    out = task.evaluate()
    assert float(out["gan/modes"]) == modes
    assert float(out["gan/hq"]) == pytest.approx(1 - math.exp(-4.5), abs=0.01)  # P(|N(0, I_2)| < 3)
    assert out["gan/w2"] < 2 * out["gan/w2_floor"]
    task.players["generator"] = Sampler(lambda n: g.centers[:1] + g.std * torch.randn(n, 2))  # one mode
    out = task.evaluate()
    assert float(out["gan/modes"]) == 1 and float(out["gan/hq"]) > 0.97
    assert out["gan/w2"] > 5 * out["gan/w2_floor"]
    task.players["generator"] = Sampler(lambda n: g.centers[:1] + 4 * g.std * torch.ones(n, 2))  # off by 4 std
    assert float(task.evaluate()["gan/hq"]) == 0 and float(task.evaluate()["gan/modes"]) == 0


def test_mog_run_logs_samples_metrics_and_pictures(tmp_path):
    from tests.run.test_cli import runner, summary

    proc = runner("task=gan", *MOG, "task.steps=60", "eval_every=20", "task.jacobian_every=20", "task.eval_samples=500",
                  "task.w2_samples=300",
                  "task.jacobian_max=0", "logger=none", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = summary(tmp_path)
    assert s["status"] == "completed" and s["convergence"]["conv/metric"] == "gan/field_norm"
    assert {"gan/w2", "gan/w2_floor", "gan/modes", "gan/hq", "gan/jac_max_abs", "gan/field_norm"} <= s["final"].keys()
    for name in ("samples.png", "samples_progress.png"):
        assert (tmp_path / name).stat().st_size > 10_000
        assert s["figures"][f"gan/{name[:-4]}"] == str(tmp_path / name)


@pytest.mark.parametrize("overrides, needle", [
    (["task.game=mog"], "model=Point: does not fit task.game=mog; use model=mlp"),
    (["model=mlp"], "model=mlp: does not fit task.game=bilinear; use model=point"),
    (["task.game=mog", "model=mlp", "task.mixture=spiral"], "task.mixture='spiral': allowed: ring, grid"),
    (["optim=adahessian"], "optim._target_=pytorch_optimizer.AdaHessian: needs second derivatives"),
])
def test_bad_mog_input_is_stopped_before_any_work(overrides, needle):
    cfg = compose_cfg("task=gan", *overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg, dict(cfg.hydra.runtime.choices))
    assert any(needle in p for p in err.value.problems), err.value.problems


@pytest.mark.parametrize("overrides", [
    ("task.game=dirac", "task.scheme=optimistic", "optim=adam", "task.jacobian_every=5"),  # F(z_{t-1}) carried over
    (*MOG, "task.scheme=extragradient", "task.eval_samples=200", "task.w2_samples=100"),  # minibatch RNG, snapshots
])
def test_a_resumed_game_reproduces_the_uninterrupted_run_exactly(tmp_path, overrides):
    from runner.resume import checkpoint
    from tests.sweep.test_sweep import _train

    cfg = compose_cfg("task=gan", "task.steps=30", *overrides, "device=cpu", "logger=none")
    straight = _train(cfg, tmp_path)
    first = _train(cfg, tmp_path, stop_at=16)
    rest = _train(cfg, tmp_path, state=checkpoint.load(tmp_path, "digest"))
    assert first + rest == straight


def test_the_phase_path_keeps_the_whole_trajectory_in_a_fixed_buffer():
    from tasks.gan.task import PATH_POINTS

    task, opts, _ = game("task.game=dirac", "task.path_every=1")
    first = task.path[0].clone()
    for _ in range(PATH_POINTS + 10):
        task.train_step(opts, measure=False)
    # steps 0, 2, ..., 4094 kept at the halving (step 4096), then 4096, 4098, ..., 4106
    assert task.path_every == 2 and task.path_len == PATH_POINTS // 2 + 6
    torch.testing.assert_close(task.path[0], first)  # the start is kept, the spacing doubled
    mog, _, _ = game(*MOG)
    assert mog.path_every == 0 and mog.path.numel() == 0  # no picture, no buffer
