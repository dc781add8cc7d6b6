"""Every optimizer config, built through its `_target_` and stepped on a real task; the Muon
split; optimizer state through `torch.load(weights_only=True)`."""

from __future__ import annotations

import io
import math

import pytest
import torch

from runner.task.optim import OptimizerSet, split_hidden_matrices
from tasks.classifier.nets import FastNet, cnn, mlp, resnet18
from tests.helpers import OPTIMS, SCHEDS, build_all, compose_cfg


def test_there_are_at_least_fifteen_optimizers():
    assert len(OPTIMS) >= 15, OPTIMS


@pytest.mark.parametrize("optim", OPTIMS)
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_every_optimizer_steps_and_reduces_loss(optim, model):
    """Twenty full-batch steps on the digits task: finite metrics, parameters move, loss falls."""
    cfg = compose_cfg(f"optim={optim}", f"model={model}", "task.batch_size=256", "task.epochs=null",
                      "task.steps=20", "device=cpu", "logger=none")
    torch.manual_seed(0)
    task, opts, _ = build_all(cfg)
    assert cfg.optim.lr > 0, "every optim config has a top-level lr"
    before = [p.detach().clone() for p in task.net.parameters()]
    first = task.train_step(opts, measure=True)
    for _ in range(18):
        task.train_step(opts, measure=False)
    last = task.train_step(opts, measure=True)
    for key in ("train/loss", "train/grad_norm", "train/update_norm"):
        assert math.isfinite(float(first[key])) and math.isfinite(float(last[key])), key
    assert float(last["train/update_norm"]) > 0  # (ADOPT's first step only fills its state)
    assert any(not torch.equal(a, b) for a, b in zip(before, task.net.parameters()))
    assert float(last["train/loss"]) < float(first["train/loss"]), optim


@pytest.mark.parametrize("sched", SCHEDS)
def test_every_schedule_runs_to_the_end(sched):
    cfg = compose_cfg(f"sched={sched}", "optim=muon", "task.epochs=null", "task.steps=20", "device=cpu")
    task, opts, _ = build_all(cfg)
    lrs = []
    for _ in range(20):
        task.train_step(opts, measure=False)
        lrs.append([o.param_groups[0]["lr"] for o in opts["model"].optimizers])
    assert all(lr >= 0 for step in lrs for lr in step)
    if sched == "constant":
        assert lrs[0] == lrs[-1]
    else:
        assert lrs[0] != lrs[-1]
    # both sides of Muon follow the same relative schedule
    base = [o.defaults["lr"] for o in opts["model"].optimizers]
    ratios = [lr / b for lr, b in zip(lrs[-1], base)]
    assert ratios[0] == pytest.approx(ratios[-1])


@pytest.mark.parametrize("make", [lambda: mlp((1, 8, 8), 10), lambda: cnn((3, 32, 32), 10),
                                  lambda: resnet18((3, 32, 32), 10), lambda: FastNet((3, 32, 32), 10)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_muon_split_covers_every_parameter_exactly_once(make, channels_last):
    model = make()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = OptimizerSet(model, lambda ps: torch.optim.Muon(ps, lr=0.02),
                       lambda ps: torch.optim.AdamW(ps, lr=1e-3))
    owned = [p for o in opt.optimizers for g in o.param_groups for p in g["params"]]
    # Muon holds 2-D views of conv filters: map each back to the tensor whose storage it shares.
    by_ptr = {p.data_ptr(): p for p in model.parameters()}
    owners = [by_ptr[p.data_ptr()] for p in owned]
    assert sorted(map(id, owners)) == sorted(id(p) for p in model.parameters())
    hidden, rest = split_hidden_matrices(model)
    assert all(p.ndim >= 2 for p in hidden) and hidden
    weights = [p for p in model.parameters() if p.ndim >= 2]
    rest_ids = {id(p) for p in rest}
    assert id(weights[0]) in rest_ids and id(weights[-1]) in rest_ids  # first layer and head: aux side
    assert all(p.ndim == 2 for p in opt.optimizers[0].param_groups[0]["params"])
    assert opt.split["matrix"][1] + opt.split["aux"][1] == sum(p.numel() for p in model.parameters())


def test_muon_updates_conv_filters_in_place_with_the_orthogonalised_step():
    torch.manual_seed(0)
    model = cnn((1, 8, 8), 10, channels=(4, 6), hidden=8).to(memory_format=torch.channels_last)
    conv = model[0][3].weight  # the second conv: hidden, 4-D
    opt = OptimizerSet(model, lambda ps: torch.optim.Muon(ps, lr=0.1, momentum=0.0, nesterov=False,
                                                          weight_decay=0.0),
                       lambda ps: torch.optim.SGD(ps, lr=0.0))
    model(torch.randn(5, 1, 8, 8)).square().sum().backward()
    grad = conv.grad.clone()
    before = conv.detach().clone()
    opt.step()
    step = (before - conv.detach()).permute(0, 2, 3, 1).reshape(conv.shape[0], -1)
    # Muon's update is (approximately) orthogonal: its singular values cluster near lr*scale.
    assert step.abs().sum() > 0
    s = torch.linalg.svdvals(step)
    assert s.max() / s.min() < 3, s
    # and it points down the gradient
    g = grad.permute(0, 2, 3, 1).reshape(conv.shape[0], -1)
    assert (step * g).sum() > 0


@pytest.mark.parametrize("optim", ["adam", "muon", "soap", "schedulefree", "lion"])
def test_optimizer_state_round_trips_through_weights_only_load(optim):
    cfg = compose_cfg(f"optim={optim}", "model=cnn", "task.epochs=null", "task.steps=3", "device=cpu")
    task, opts, _ = build_all(cfg)
    for _ in range(3):
        task.train_step(opts, measure=False)
    buf = io.BytesIO()
    torch.save(opts["model"].state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    task2, opts2, _ = build_all(compose_cfg(f"optim={optim}", "model=cnn", "task.epochs=null",
                                            "task.steps=3", "device=cpu"))
    opts2["model"].load_state_dict(state)
    assert opts2["model"].state_dict()["optimizers"][0]["param_groups"][0]["lr"] == \
        state["optimizers"][0]["param_groups"][0]["lr"]


def test_grad_norm_is_read_before_the_step():
    """Muon (nesterov) rewrites p.grad in some implementations; the norm must be the raw one."""
    torch.manual_seed(0)
    model = mlp((1, 8, 8), 10, hidden=(16, 16))
    opt = OptimizerSet(model, lambda ps: torch.optim.SGD(ps, lr=0.1))
    model(torch.randn(4, 1, 8, 8)).sum().backward()
    expected = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters()))
    stats = opt.step(measure=True)
    assert float(stats["grad_norm"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(stats["update_norm"]) == pytest.approx(0.1 * float(expected), rel=1e-4)
