"""The classifier's primary metric with weight decay: the gradient norm of the objective the
optimizer minimises (L + wd/2 |w|^2 where the decay is a gradient term, L where it is decoupled),
per param group, with the loss gradient's norm beside it; and the probe that tells coupled from
decoupled decay, for every optimizer config."""

from __future__ import annotations

import random

import numpy as np
import pytest
import pytorch_optimizer
import torch

from runner.task.decay import coupled_decay, decay_is_a_gradient_term
from runner.task.optim import OptimizerSet
from tests.helpers import OPTIMS, build_all, compose_cfg

FULL_BATCH = ("task.batch_size=1437", "task.epochs=null", "device=cpu")


def classifier(*overrides: str):
    torch.manual_seed(0)
    task, opts, _ = build_all(compose_cfg(*FULL_BATCH, *overrides))
    return task, opts


def test_sgd_with_decay_converges_where_the_objective_gradient_vanishes_and_the_loss_gradient_does_not():
    """Full-batch gradient descent on softmax regression (digits, no hidden layer) with L2 decay
    0.05: a strongly convex objective, so |grad L + wd w| falls geometrically to the float32
    floor, while grad L settles at -wd w* (its norm ~0.17 here)."""
    lr = 0.5
    task, opts = classifier("optim=sgd", f"optim.lr={lr}", "optim.weight_decay=0.05", "model.hidden=[]",
                            "task.steps=300")
    records = [task.train_step(opts, measure=step == 1 or step % 50 == 0) for step in range(1, 301)]
    records = [{k: float(v) for k, v in r.items()} for r in records if r]
    first, last = records[0], records[-1]
    assert last["train/grad_norm"] < 1e-3 * first["train/grad_norm"], records
    assert last["train/loss_grad_norm"] > 0.1 and last["train/loss_grad_norm"] > 1e3 * last["train/grad_norm"]
    for r in records:  # plain SGD steps along exactly this gradient: update = lr * primary
        assert r["train/update_norm"] == pytest.approx(lr * r["train/grad_norm"], rel=1e-3, abs=1e-7)


@pytest.mark.parametrize("optim", ["sgd", "adamw"])
def test_without_decay_or_with_decoupled_decay_the_primary_is_the_loss_gradient(optim):
    task, opts = classifier(f"optim={optim}", "model.hidden=[16]", "task.steps=3",
                            *(["optim.weight_decay=0.0"] if optim == "sgd" else []))  # adamw: 0.01, decoupled
    for _ in range(3):
        out = task.train_step(opts, measure=True)
        assert float(out["train/grad_norm"]) == float(out["train/loss_grad_norm"]) > 0
    assert task.train_step(opts, measure=False) == {}


def spy_on_step(opt: OptimizerSet, decay: dict[int, float]) -> dict:
    """Wraps opt.step to compute, before it, the expected primary: sqrt(sum |g + decay[p] w|^2)."""
    seen, step = {}, opt.step

    def spied(measure=False):
        seen["expected"] = torch.sqrt(sum(((p.grad + decay.get(id(p), 0.0) * p.detach()) ** 2).sum()
                                          for p in opt.params))
        seen["loss"] = torch.sqrt(sum((p.grad ** 2).sum() for p in opt.params))
        return step(measure)

    opt.step = spied
    return seen


def test_decay_split_by_param_group_enters_only_where_it_acts():
    """Decay on the weight matrices, none on the biases (a common split): the primary is
    sqrt(sum_W |g + wd W|^2 + sum_b |g|^2), read before the step."""
    task, _ = classifier("model.hidden=[16]", "task.steps=2")
    weights = [p for p in task.net.parameters() if p.ndim == 2]
    biases = [p for p in task.net.parameters() if p.ndim == 1]
    opt = OptimizerSet(task.net, lambda ps: torch.optim.SGD([{"params": weights, "weight_decay": 0.3},
                                                             {"params": biases, "weight_decay": 0.0}], lr=0.1))
    seen = spy_on_step(opt, {id(p): 0.3 for p in weights})
    out = task.train_step({"model": opt}, measure=True)
    assert float(out["train/grad_norm"]) == pytest.approx(float(seen["expected"]), rel=1e-6)
    assert float(out["train/loss_grad_norm"]) == pytest.approx(float(seen["loss"]), rel=1e-6)
    assert float(out["train/grad_norm"]) > 1.01 * float(out["train/loss_grad_norm"])


def test_a_matrix_optimizers_views_of_conv_filters_count_as_the_filters():
    """A matrix optimizer holds 2-D views of the conv filters (runner.task.optim): with coupled decay
    on both sides (SGD on the hidden matrices, wd 0.1; SGD on the rest, wd 0.2), each model
    tensor enters once, with its own side's decay."""
    task, opts = classifier("optim=muon", "optim._target_=torch.optim.SGD", "optim.weight_decay=0.1",
                            "~optim.ns_steps", "~optim.adjust_lr_fn", "model=cnn", "task.batch_size=64",
                            "task.steps=2", "optim.aux._target_=torch.optim.SGD", "optim.aux.weight_decay=0.2",
                            "~optim.aux.betas", "~optim.aux.eps")
    opt = opts["model"]
    assert opt.views and [type(o).__name__ for o in opt.optimizers] == ["SGD", "SGD"]
    found = coupled_decay(opt)
    model_ids = {id(p) for p in task.net.parameters()}
    assert sorted(id(p) for _, ps in found for p in ps) == sorted(model_ids)  # the filters, not their views
    hidden = {id(p) for p in found[0][1]}
    seen = spy_on_step(opt, {id(p): 0.1 if id(p) in hidden else 0.2 for p in opt.params})
    out = task.train_step(opts, measure=True)
    assert float(out["train/grad_norm"]) == pytest.approx(float(seen["expected"]), rel=1e-5)


# What the probe finds for each shipped config (with a weight decay of 0.05 set): is the decay a
# gradient term? Read off each library's code: torch's SGD, Adam, NAdam, RAdam, RMSprop and Adagrad
# add wd * w to the gradient, ADOPT too (weight_decouple=False); AdamW, Muon, SOAP shrink the weights;
# nesterov_convex (tasks/objectives/accelerated.py) as SGD; Schedule-Free AdamW adds wd * y after the preconditioner; AdamP, Lion, Kron, Prodigy and
# AdaHessian default to weight_decouple=True.
COUPLED = {"sgd", "momentum", "nesterov", "nesterov_convex", "adam", "nadam", "radam", "rmsprop", "adagrad", "adopt"}


@pytest.mark.parametrize("optim", OPTIMS)
def test_the_probe_tells_coupled_from_decoupled_decay_for_every_optimizer(optim):
    aux = ["optim.aux.weight_decay=0.05"] if optim == "muon" else []
    _, opts = classifier(f"optim={optim}", "optim.weight_decay=0.05", "model.hidden=[8]", "task.steps=2", *aux)
    found = coupled_decay(opts["model"])
    assert bool(found) == (optim in COUPLED), found
    if found:
        assert {id(p) for _, ps in found for p in ps} == {id(p) for p in opts["model"].params}


@pytest.mark.parametrize(("cls", "kwargs", "by_rank"), [
    (torch.optim.Adam, {"decoupled_weight_decay": True}, {1: False, 2: False}),
    (pytorch_optimizer.Lion, {"weight_decouple": False}, {1: True, 2: True}),
    (pytorch_optimizer.AdaHessian, {"weight_decouple": False}, {1: True, 2: True}),
    (pytorch_optimizer.Kron, {"weight_decouple": False}, {1: False, 2: True}),  # Kron decays matrices only
    (pytorch_optimizer.AdamP, {"weight_decouple": False}, {1: False, 2: False}),  # added after the step used the gradient
])
def test_the_probe_follows_each_optimizers_own_switch(cls, kwargs, by_rank):
    params = [torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(3, 2))]
    group = cls(params, lr=1e-3, weight_decay=0.05, **kwargs).param_groups[0]
    create_graph = cls is pytorch_optimizer.AdaHessian
    assert {r: decay_is_a_gradient_term(cls, group, r, create_graph) for r in by_rank} == by_rank


def test_the_probe_leaves_every_random_generator_as_it_was():
    """Kron draws from numpy and torch while it steps: a probe must not shift the run's draws."""
    group = pytorch_optimizer.Kron([torch.nn.Parameter(torch.randn(3, 2))], lr=1e-3,
                                   weight_decay=0.05).param_groups[0]
    before = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    decay_is_a_gradient_term(pytorch_optimizer.Kron, group, 2)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1]) and random.getstate() == before[2]
