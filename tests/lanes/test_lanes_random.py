"""Lanes with random draws (README "Lanes"): stochastic objectives (minibatch rows, gradient noise)
and diffusion sampling (initial noise, Brownian paths), each lane drawing from its own task's
generator as its single run draws. The same sweep through the basic launcher and through
`hydra/launcher=lanes` gives the same records and summaries (tests/lanes/test_lanes.py's
`same_sweeps`: float64, 1e-12 relative)."""

from __future__ import annotations

import pytest

from tests.lanes.test_lanes import same_sweeps


@pytest.mark.parametrize("args", [
    ("problem=least_squares", "task.batch_size=8", "optim=sgd", "optim.lr=0.05,0.1"),
    ("problem=logistic", "task.batch_size=16", "task.noise=0.01,0.05", "optim=adam", "optim.lr=0.01"),
    ("problem=quadratic", "task.noise=0,0.1", "optim=momentum", "optim.lr=0.1,0.2"),
    ("problem=factorisation", "task.noise=0.05", "optim=sgd", "optim.lr=0.05"),
    ("problem=reddi", "task.noise=0.1", "optim=adam", "optim.betas=[0.0,0.1]", "optim.lr=0.1"),
], ids=["rows", "rows-noise-adam", "noise-or-none", "two-variables", "online"])
def test_stochastic_objective_lanes_equal_single_runs(capsys, tmp_path, args):
    out = same_sweeps(capsys, tmp_path, "task=objective", "task.steps=60", "log_every=5", "seed=0,1", *args)
    assert "jobs as one batched computation" in out and "one by one" not in out


SMALL = ("task=diffusion", "task.samples=200", "task.ot_samples=100", "task.steps=[2,4,8]", "seed=0,1,2")


@pytest.mark.parametrize("args", [
    (),  # the ring, Euler on the flow, its dopri8 reference lane by lane
    ("sampler=euler_maruyama",),  # Brownian paths: one per lane, the SRK reference on all lanes at once
    ("sampler=ddpm", "task.process=ve", "task.grid=uniform"),
    ("sampler=heun", "task.target=gaussian", "task.dim=3"),  # the exact flow map as the reference
    ("sampler=dpmpp_2m", "task.mixture=grid", "task.components=4", "task.prior=standard"),
    ("sampler=dopri5",),  # adaptive: lane by lane
    ("sampler=rk4", "task.samples=200,300", "task.mmd_bandwidth=0.5,1"),  # lane-safe keys: 12 lanes
], ids=["euler-ring", "euler-maruyama", "ddpm-ve", "heun-gaussian", "dpmpp-grid-standard", "dopri5", "lane-safe-keys"])
def test_diffusion_lanes_equal_single_runs(capsys, tmp_path, args):
    out = same_sweeps(capsys, tmp_path, *SMALL, *args)
    assert "jobs as one batched computation" in out and "one by one" not in out
    assert (tmp_path / "lanes" / "0" / "error_vs_nfe.png").exists()
