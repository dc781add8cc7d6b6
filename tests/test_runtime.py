"""How a run computes: sharpness measurements, schedule-free evaluation, precision, full batch,
torch.compile, and (where a GPU exists) CUDA with bf16 autocast and channels_last."""

from __future__ import annotations

import math

import pytest
import torch

from runner.loop import train
from tests.helpers import build_all, compose_cfg


def run_steps(*overrides: str, steps: int = 6, **loop_kwargs) -> tuple[list[dict], object]:
    cfg = compose_cfg("task.epochs=null", f"task.steps={steps}", *overrides)
    torch.manual_seed(0)
    task, opts, rt = build_all(cfg)
    records: list[dict] = []
    train(task, opts, rt, lambda r: records.append(r), **{"log_every": 2, "eval_every": 3, **loop_kwargs})
    return records, task


def test_sharpness_is_measured_without_changing_the_model():
    cfg = compose_cfg("model=fastnet", "task.epochs=null", "task.steps=4", "device=cpu", "task.sharpness_batch=64")
    task, opts, rt = build_all(cfg)
    task.train_step(opts, measure=False)
    buffers = [b.clone() for b in task.net.buffers()]
    params = [p.detach().clone() for p in task.net.parameters()]
    from runner.sharpness import top_hessian_eigenvalue

    value = top_hessian_eigenvalue(task.sharpness_loss(), [p for p in task.net.parameters()], iters=10)
    assert math.isfinite(value) and value > 0
    assert all(torch.equal(a, b) for a, b in zip(buffers, task.net.buffers()))
    assert all(torch.equal(a, b) for a, b in zip(params, task.net.parameters()))


def test_sharpness_appears_in_records_when_asked_for():
    records, _ = run_steps("model=mlp", sharpness_every=5, sharpness_iters=5, steps=10)
    values = {r["step"]: r["train/sharpness"] for r in records if "train/sharpness" in r}
    assert list(values) == [5, 10] and all(v > 0 for v in values.values())  # 5: not a log step


def test_schedule_free_evaluates_at_its_averaged_iterate():
    cfg = compose_cfg("optim=schedulefree", "task.epochs=null", "task.steps=10")
    task, opts, _ = build_all(cfg)
    for _ in range(10):
        task.train_step(opts, measure=False)
    train_point = [p.detach().clone() for p in task.net.parameters()]
    opts["model"].eval()
    eval_point = [p.detach().clone() for p in task.net.parameters()]
    opts["model"].train()
    assert any(not torch.equal(a, b) for a, b in zip(train_point, eval_point))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(train_point, task.net.parameters()))


def test_bf16_autocast_on_cpu():
    records, _ = run_steps("precision=bf16", "model=cnn", "device=cpu")
    assert all(math.isfinite(v) for r in records for v in r.values())


def test_full_batch_gradient_descent_takes_one_step_per_epoch():
    cfg = compose_cfg("task.batch_size=1437", "task.epochs=7", "optim=sgd")
    task, _, _ = build_all(cfg)
    assert task.steps_per_epoch == 1 and task.total_steps == 7


@pytest.mark.slow
def test_torch_compile_runs():
    records, _ = run_steps("compile=true", "model=mlp", "device=cpu", steps=4)
    assert records[-1]["step"] == 4 and math.isfinite(records[-1]["train/loss"])


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["cnn", "fastnet", "resnet18"])
def test_cuda_run_uses_bf16_channels_last_and_device_data(model):
    records, task = run_steps(f"model={model}", "device=cuda", "optim=muon", steps=6)
    assert task.x_train.is_cuda and task.rt.dtype == torch.bfloat16
    conv = next(m for m in task.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(math.isfinite(v) for r in records for v in r.values())
