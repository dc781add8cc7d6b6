"""The classifier's losses, float64 runs and the sharpness estimates (issue 14, "The classifiers
too"): MSE on one-hot targets against a hand computation, a whole fp64 run with every tensor in
float64, power iteration and Lanczos against the exact Hessian eigenvalue of a tiny model, and
the full batch measured in a full-batch run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from runner.run.loop import train
from runner.task.sharpness import lanczos_top_eigenvalue, top_hessian_eigenvalue
from tasks.classifier.task import mse_one_hot
from tests.helpers import build_all, compose_cfg, run_main

FULL_BATCH = ("task.batch_size=1437", "task.epochs=null", "device=cpu", "optim=sgd", "model.hidden=[16]")


def test_mse_value_and_gradient_match_a_hand_computation():
    logits = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.25, -0.5]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([2, 0])
    for smoothing in (0.0, 0.3):
        target = np.array([[0, 0, 1], [1, 0, 0]], float) * (1 - smoothing) + smoothing / 3
        diff = logits.detach().numpy() - target
        loss = mse_one_hot(logits, y, smoothing)
        (grad,) = torch.autograd.grad(loss, logits)
        assert loss.item() == pytest.approx(0.5 * (diff ** 2).sum(1).mean(), rel=1e-15)
        np.testing.assert_allclose(grad.numpy(), diff / 2, rtol=1e-15)  # d/dz of 0.5/N sum (z - t)^2: (z - t)/N


def test_the_mse_task_trains_and_evaluates_on_the_mse():
    torch.manual_seed(0)
    task, opts, _ = build_all(compose_cfg(*FULL_BATCH, "task.steps=3", "task.loss=mse"))
    with torch.no_grad():
        before = mse_one_hot(task.net(task.x_train), task.y_train)
        held_out = mse_one_hot(task.net(task.x_test), task.y_test)
    assert task.evaluate()["eval/loss"].item() == pytest.approx(held_out.item(), rel=1e-6)
    out = task.train_step(opts, measure=True)  # full batch, unshuffled order aside: the same mean
    assert out["train/loss"].item() == pytest.approx(before.item(), rel=1e-6)


def test_a_whole_fp64_run_keeps_everything_in_float64(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_cfg(*FULL_BATCH, "task.steps=4", "precision=fp64", "task.loss=mse", "optim=adam")
    torch.manual_seed(0)
    task, opts, rt = build_all(cfg)
    records: list[dict] = []
    train(task, opts, rt, records.append, log_every=2, eval_every=2, sharpness_every=2, sharpness_lanczos=True)
    assert rt.precision == "fp64" and rt.dtype is None
    assert {t.dtype for t in (task.x_train, task.x_test, task.sharp_x)} == {torch.float64}
    assert {p.dtype for p in task.net.parameters()} == {torch.float64}
    state = [v for s in opts["model"].optimizers[0].state.values() for v in s.values() if v.is_floating_point()]
    assert state and {v.dtype for v in state if v.dim() > 0} == {torch.float64}
    assert task.sharpness_loss().dtype == torch.float64 and task.evaluate()["eval/loss"].dtype == torch.float64
    assert all(math.isfinite(r["train/sharpness_lanczos"]) for r in records if "train/sharpness" in r)
    run_dir = tmp_path / "run"
    code, out = run_main(capsys, *FULL_BATCH, "task.steps=4", "precision=fp64", "logger=none", f"hydra.run.dir={run_dir}")
    assert code == 0, out
    assert json.loads((run_dir / "summary.json").read_text())["precision"] == "fp64"


@pytest.mark.gpu
def test_a_whole_fp64_run_on_cuda():
    torch.manual_seed(0)
    task, opts, rt = build_all(compose_cfg(*FULL_BATCH[:2], "device=cuda", "task.steps=3", "precision=fp64",
                                           "model=cnn"))
    out = task.train_step(opts, measure=True)
    assert task.x_train.is_cuda and {p.dtype for p in task.net.parameters()} == {torch.float64}
    assert out["train/loss"].dtype == torch.float64 and rt.dtype is None


def tiny_loss() -> tuple[torch.Tensor, list[torch.Tensor], nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x, y = torch.randn(12, 4, dtype=torch.float64), torch.randint(0, 3, (12,))
    return mse_one_hot(net(x), y), list(net.parameters()), net, x, y


def exact_top_eigenvalue(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for p in net.parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def f(flat: torch.Tensor) -> torch.Tensor:
        parts = flat.split([s.numel() for s in shapes])
        state = {n: c.reshape(s) for n, c, s in zip(names, parts, shapes)}
        return mse_one_hot(torch.func.functional_call(net, state, (x,)), y)

    hessian = torch.autograd.functional.hessian(f, flat0)
    return float(torch.linalg.eigvalsh(hessian)[-1])


def test_power_iteration_and_lanczos_find_the_exact_top_hessian_eigenvalue():
    loss, params, net, x, y = tiny_loss()
    exact = exact_top_eigenvalue(net, x, y)
    assert exact > 0
    assert lanczos_top_eigenvalue(loss, params, tol=1e-10) == pytest.approx(exact, rel=1e-8)
    torch.manual_seed(0)
    assert top_hessian_eigenvalue(loss, params, iters=2000, rtol=1e-12) == pytest.approx(exact, rel=1e-6)


def test_lanczos_agrees_with_power_iteration_on_the_classifier_and_leaves_the_rngs_alone():
    torch.manual_seed(0)
    task, opts, _ = build_all(compose_cfg(*FULL_BATCH, "task.steps=1", "precision=fp64"))
    params = list(task.net.parameters())
    state = torch.get_rng_state()
    lanczos = lanczos_top_eigenvalue(task.sharpness_loss(), params)
    assert torch.equal(state, torch.get_rng_state())
    power = top_hessian_eigenvalue(task.sharpness_loss(), params, iters=500, rtol=1e-9)
    assert power == pytest.approx(lanczos, rel=1e-4)
    assert top_hessian_eigenvalue(task.sharpness_loss(), params) <= lanczos * (1 + 1e-6)  # a Rayleigh quotient


def test_a_full_batch_run_measures_the_sharpness_on_the_whole_training_set():
    task, _, _ = build_all(compose_cfg(*FULL_BATCH, "task.steps=1"))
    assert len(task.sharp_y) == task.n == 1437
    task, _, _ = build_all(compose_cfg(*FULL_BATCH, "task.steps=1", "task.batch_size=64"))
    assert len(task.sharp_y) == 512  # minibatches: a fixed 512, at least the run's batch
    task, _, _ = build_all(compose_cfg(*FULL_BATCH, "task.steps=1", "task.sharpness_batch=100"))
    assert len(task.sharp_y) == 100


def test_measuring_sharpness_leaves_the_training_trajectory_alone():
    """Both estimates draw their start vectors from generators of their own: a run with sharpness on
    steps through the same losses as one without, the minibatch order of later epochs included."""
    def losses(sharpness_every: int) -> list[float]:
        torch.manual_seed(0)
        task, opts, rt = build_all(compose_cfg("device=cpu", "optim=sgd", "model.hidden=[16]", "task.batch_size=512",
                                              "task.epochs=null", "task.steps=6"))
        records: list[dict] = []
        train(task, opts, rt, records.append, log_every=1, eval_every=100, sharpness_every=sharpness_every,
              sharpness_lanczos=True)
        return [r["train/loss"] for r in records]

    assert losses(2) == losses(0)
