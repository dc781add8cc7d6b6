"""How a run computes: sharpness measurements, schedule-free evaluation, precision, full batch,
torch.compile, and (where a GPU exists) CUDA with bf16 autocast and channels_last."""

from __future__ import annotations

import math

import pytest
import torch

from runner.run.loop import train
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
    from runner.task.sharpness import top_hessian_eigenvalue

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


# CPU threads: the `threads=auto` rule as a pure function, the key's validation, one real run.
@pytest.mark.parametrize("cpus, jobs, device, env, threads, source", [
    (2, 1, "cpu", {}, 1, "auto: 2 cpus / 1 job"),       # one CPU left to the rest of the machine
    (1, 1, "cpu", {}, 1, "auto: 1 cpu / 1 job"),
    (2, 2, "cpu", {}, 1, "auto: 2 cpus / 2 jobs"),      # joblib n_jobs=2: a share each, not all cores
    (16, 1, "cpu", {}, 15, "auto: 16 cpus / 1 job"),
    (16, 3, "cpu", {}, 5, "auto: 16 cpus / 3 jobs"),
    (16, 32, "cpu", {}, 1, "auto: 16 cpus / 32 jobs"),  # never below one
    (32, 1, "cuda", {}, 4, "auto: 32 cpus / 1 job, cuda host cap"),
    (32, 8, "cuda", {}, 3, "auto: 32 cpus / 8 jobs"),
    (2, 1, "cpu", {"OMP_NUM_THREADS": "2"}, 2, "OMP_NUM_THREADS"),  # the user's word wins
    (16, 2, "cpu", {"OMP_NUM_THREADS": "8"}, 8, "OMP_NUM_THREADS"),  # ... and joblib's in its workers
    (8, 1, "cpu", {"OMP_NUM_THREADS": "4,2"}, 4, "OMP_NUM_THREADS"),  # nested OpenMP: the outer level
    (8, 1, "cpu", {"OMP_NUM_THREADS": ""}, 7, "auto: 8 cpus / 1 job"),
    (8, 1, "cpu", {"OMP_NUM_THREADS": "0"}, 7, "auto: 8 cpus / 1 job"),
])
def test_auto_threads_rule(cpus, jobs, device, env, threads, source):
    from runner.task.device import auto_threads

    assert auto_threads(cpus, jobs, device, env) == (threads, source)


@pytest.mark.parametrize("mode, launcher, jobs", [
    ("RUN", {}, 1), ("MULTIRUN", {}, 1),                       # one run; the basic launcher runs jobs in turn
    ("MULTIRUN", {"n_jobs": 2}, 2), ("MULTIRUN", {"n_jobs": -1}, 8), ("MULTIRUN", {"n_jobs": -2}, 7),
])
def test_parallel_jobs_of_a_sweep(mode, launcher, jobs):
    from types import SimpleNamespace

    from hydra.types import RunMode

    from runner.task.device import parallel_jobs

    assert parallel_jobs(SimpleNamespace(mode=RunMode[mode], launcher=launcher), cpus=8) == jobs


def test_usable_cpus_follow_affinity_and_slurm():
    import os

    from runner.task.device import usable_cpus

    mine = len(os.sched_getaffinity(0))
    assert usable_cpus({}) == mine and usable_cpus({"SLURM_CPUS_PER_TASK": "1"}) == 1
    assert usable_cpus({"SLURM_CPUS_PER_TASK": str(mine + 8)}) == mine


def test_threads_can_be_set_again_in_one_process():
    """A sweep with the basic launcher runs every job in one process: each sets its own count."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from runner.task.device import set_threads

    before = torch.get_num_threads()
    with threadpool_limits(limits=None, user_api="blas"):  # restores the BLAS pools on exit
        try:
            assert set_threads(1, "cpu", 1) == {"intra_op": 1, "interop": torch.get_num_interop_threads(),
                                                "source": "config"}
            assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
            assert set_threads(2, "cpu", 1)["intra_op"] == 2
        finally:
            torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", "true"])
def test_bad_thread_counts_are_named(value):
    from runner.validation.validate import ConfigError, validate

    cfg = compose_cfg(f"threads={value}")
    with pytest.raises(ConfigError, match=r"threads=.*: allowed: auto, or an integer >= 1"):
        validate(cfg, dict(cfg.hydra.runtime.choices))


def test_a_run_records_its_thread_count(tmp_path):
    from tests.run.test_cli import runner, summary

    proc = runner("threads=1", "logger=none", "task.epochs=1", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary(tmp_path)["threads"]["intra_op"] == 1
    assert summary(tmp_path)["threads"]["source"] == "config"
