"""The mog GAN as lanes (tasks/gan/lanes.py): MLP players as LaneNetworks, each lane's minibatches
drawn by its own task's generator. The same sweep through the basic launcher and through
`hydra/launcher=lanes` gives the same records and summaries (tests/lanes/test_lanes.py's
`same_sweeps`: float64, 1e-12 relative) in every scheme, with `d_steps`, the penalties over lanes
of `task.gamma`, WGAN-GP's interpolation, the exact Jacobian and ARPACK's estimate (lane by lane);
in float32 within the tolerance below, with the same verdicts."""

from __future__ import annotations

import json

import pytest

from runner.run.metrics import read_records
from tests.lanes.test_lanes import float32_sweeps, same_sweeps

# 95 parameters (a 16-4-2 generator, a 2-4-1 discriminator): the exact Jacobian below jacobian_max=200
SMALL = ("task=gan", "task.game=mog", "model=mlp", "model.hidden=[4]", "task.batch_size=16", "task.eval_samples=200",
         "task.w2_samples=100", "task.steps=12", "log_every=3", "eval_every=6", "task.jacobian_every=6", "seed=0,1")


@pytest.mark.parametrize("args", [
    ("task.scheme=simultaneous", "optim=sgd", "optim.lr=0.05,0.1"),
    ("task.scheme=alternating", "task.d_steps=2", "optim=adam", "optim.lr=0.01,0.02"),
    ("task.scheme=extragradient", "optim=adam", "optim.lr=0.01", "task.lr_ratio=1,2"),
    ("task.scheme=optimistic", "task.loss=nonsaturating", "task.reg=r1", "task.gamma=0.1,1", "optim=sgd",
     "optim.lr=0.05"),
    ("task.loss=wgan_gp", "task.reg=r2", "task.gamma=0.5", "model.hidden=[8]", "optim=adam", "optim.lr=0.01,0.02"),
    ("task.jacobian_max=0", "task.jacobian_iters=50", "optim=momentum", "optim.lr=0.05,0.1"),
], ids=["simultaneous-sgd", "alternating-dsteps-adam", "extragradient-two-time-scales", "optimistic-r1-gammas",
        "wgan-gp-r2", "arpack"])
def test_mog_lanes_equal_single_runs_in_float64(capsys, tmp_path, args):
    out = same_sweeps(capsys, tmp_path, *SMALL, *args, "precision=fp64", "threads=1")
    assert "4 jobs as one batched computation" in out and "one by one" not in out, out
    s = json.loads((tmp_path / "lanes" / "0" / "summary.json").read_text())
    assert {"gan/w2", "gan/modes", "gan/jac_max_real", "gan/field_norm"} <= s["final"].keys()
    assert (tmp_path / "lanes" / "0" / "samples.png").exists()


# float32: the lanes' batched matmuls (vmap) sum in another order than the single run's, a relative
# rounding of ~1e-7 per operation, which the game carries along. Measured (2 seeds x 2 lr, [32,32]
# players, batch 64): SGD at most 5.4e-7 relative over 60 steps and 1.7e-6 over 200; Adam 5.5e-6 over
# 60 steps (3.2e-4 with the default [256,256] players), but over 200 steps one lane of four reached
# 3e-1 by step 100: Adam's m / sqrt(v) makes a tiny gradient's rounding a step of order lr, and a
# sample crossing a ReLU's kink changes the field at once. The same lanes in float64 agree to 6e-9 at
# step 200 (3e-12 at 180): the same growth from 1e-16, no lane drawing or stepping otherwise. So
# SGD is held to 1e-5, Adam over 60 steps to 1e-2, both to equal gan/modes and the same verdicts.
FLOAT32_RTOL = {"sgd": 1e-5, "adam": 1e-2}


@pytest.mark.parametrize("optim", ["sgd", "adam"])
def test_mog_lanes_in_float32_match_within_rounding_and_give_the_same_verdicts(capsys, tmp_path, optim):
    args = ("task=gan", "task.game=mog", "model=mlp", "model.hidden=[32,32]", "task.batch_size=64",
            "task.eval_samples=300", "task.w2_samples=200", "task.steps=60", "log_every=5", "eval_every=30",
            "task.jacobian_every=30", f"optim={optim}", "optim.lr=0.01,0.02", "seed=0,1", "precision=fp32",
            "threads=1")
    worst = float32_sweeps(capsys, tmp_path, "gan/modes", *args)
    print(f"float32 {optim}: worst relative difference {worst:.3g}")
    assert 0 < worst <= FLOAT32_RTOL[optim], worst  # 0: the lanes would not be batched kernels at all


def test_a_diverged_mog_lane_ends_as_its_single_run_with_its_pictures(capsys, tmp_path):
    out = same_sweeps(capsys, tmp_path, *SMALL, "optim=sgd", "optim.lr=0.05,1e6", "precision=fp64", "threads=1")
    assert "4 jobs as one batched computation" in out, out
    status = {j: json.loads((tmp_path / "lanes" / j / "summary.json").read_text())["status"] for j in "0123"}
    assert status == {"0": "completed", "1": "diverged", "2": "completed", "3": "diverged"}, status
    for job in "0123":  # no snapshot kept after a lane's end: its pictures are its single run's
        for name in ("samples.png", "samples_progress.png"):
            assert (tmp_path / "lanes" / job / name).read_bytes() == (tmp_path / "basic" / job / name).read_bytes()


def test_an_estimate_left_out_in_one_lane_is_left_out_of_that_lanes_record_only(capsys, tmp_path, monkeypatch):
    """ARPACK that does not converge leaves its value out (task.py); here forced for the runs whose
    own stream's seed is odd, so one lane of a group has the value and the other not."""
    import torch

    from runner.task.rng import stream
    from tasks.gan.task import GameGDA

    def parity(seed: int) -> int:
        torch.manual_seed(seed)
        return stream("gan/mog").initial_seed() % 2

    seeds = {parity(s): s for s in range(10)}
    estimate = GameGDA.jacobian_eigs

    def unconverged_when_odd(self):
        out = estimate(self)
        if self.game.gen.initial_seed() % 2:
            out.pop("gan/jac_max_abs")
        return out

    monkeypatch.setattr(GameGDA, "jacobian_eigs", unconverged_when_odd)
    out = same_sweeps(capsys, tmp_path, *SMALL[:-1], f"seed={seeds[0]},{seeds[1]}", "task.jacobian_max=0",
                      "precision=fp64", "threads=1")
    assert "2 jobs as one batched computation" in out, out
    has = [any("gan/jac_max_abs" in r for r in read_records(tmp_path / "lanes" / j / "metrics.jsonl")) for j in "01"]
    assert has == [True, False] and all(
        any("gan/jac_max_real" in r for r in read_records(tmp_path / "lanes" / j / "metrics.jsonl")) for j in "01")
