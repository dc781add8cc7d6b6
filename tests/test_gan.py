"""The GAN task's games: the field and its Jacobian against autograd and finite differences,
each game's equilibrium, the textbook behaviour of the four schemes on the bilinear game, the
counted gradient evaluations, two time scales, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from runner.validate import ConfigError, validate
from tests.helpers import build_all, compose_cfg


def game(*overrides: str):
    torch.manual_seed(0)
    return build_all(compose_cfg("task=gan", "device=cpu", *overrides))


def run(task, opts, steps):
    return [task.train_step(opts, measure=True) for _ in range(steps)]


@pytest.mark.parametrize("overrides", [["task.dim=3", "task.sv_max=2"],
                                       ["task.game=dirac"], ["task.game=dirac", "task.loss=nonsaturating"],
                                       ["task.game=dirac", "task.loss=wgan"],
                                       ["task.game=dirac", "task.reg=r1", "task.gamma=0.3"]])
def test_field_and_jacobian_match_finite_differences(overrides):
    task, _, _ = game(*overrides)
    x, y = (p.z.detach().clone() for p in task.players.values())
    n, h = len(x), 1e-6
    z = torch.cat([x, y])

    def field(v):
        xx, yy = v[:n].clone().requires_grad_(), v[n:].clone().requires_grad_()
        return torch.cat(task.field_at(xx, yy))

    def loss_pair(v):
        return task.losses(v[:n], v[n:])

    f = field(z)
    for i in range(len(z)):  # F_i is the derivative of the owning player's loss along coordinate i
        e = torch.zeros_like(z)
        e[i] = h
        which = 0 if i < n else 1
        fd = (loss_pair(z + e)[which] - loss_pair(z - e)[which]) / (2 * h)
        assert float(f[i]) == pytest.approx(float(fd), rel=1e-6, abs=1e-8)
    jac = task.jacobian()
    fd_jac = torch.stack([-(field(z + h * torch.eye(len(z))[j]) - field(z - h * torch.eye(len(z))[j])) / (2 * h)
                          for j in range(len(z))], 1)
    torch.testing.assert_close(jac, fd_jac, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("overrides", [["task.dim=4", "task.sv_min=0.5", "task.sv_max=3"], ["task.game=dirac"],
                                       ["task.game=dirac", "task.loss=wgan"], ["task.game=dirac", "task.reg=r2", "task.gamma=1"]])
def test_the_field_vanishes_at_the_equilibrium(overrides):
    task, _, _ = game(*overrides)
    x, y = (e.clone().requires_grad_() for e in task.eq)
    assert all(float(g.abs().max()) < 1e-12 for g in task.field_at(x, y))


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
    task, opts, _ = game("task.game=dirac", "task.reg=r1", "task.gamma=0.3", "optim.lr=0.1")
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
    ("task.game=wgan2d", "task.game='wgan2d': allowed: bilinear, dirac"),
    ("task.scheme=extragradiant", "task.scheme='extragradiant': allowed: simultaneous, alternating, extragradient, optimistic"),
    ("task.lr_ratio=-1", "task.lr_ratio=-1: must be > 0"),
    ("task.reg=r1", "the bilinear game has no GAN loss or penalty"),
])
def test_bad_input_is_stopped_before_any_work(override, needle):
    cfg = compose_cfg("task=gan", override)
    with pytest.raises(ConfigError) as err:
        validate(cfg, dict(cfg.hydra.runtime.choices))
    assert any(needle in p for p in err.value.problems), err.value.problems
