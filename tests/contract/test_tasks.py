"""The contract every task meets, run over every `conf/task/*.yaml` with a representative set
of optimizers: build from config, train a few steps through the runner's loop, log finite
namespaced metrics with a stable key set, evaluate, and report its primary metric."""

from __future__ import annotations

import math

import pytest

from runner.run.loop import assess, train
from runner.run.metrics import History
from runner.task.convergence import fit_tail
from tests.helpers import TASKS, build_all, compose_cfg, data_dir_for


# cifar100 with Muon repeats cifar's (the same net with 100 classes) at ~30 s on a CPU, where
# torch.optim.Muon's bfloat16 Newton-Schulz iterations are slow: a long test.
CASES = [pytest.param(task, optim, marks=pytest.mark.slow) if (task, optim) == ("cifar100", "muon") else (task, optim)
         for task in TASKS for optim in ("sgd", "adam", "muon")]


@pytest.mark.parametrize(("task", "optim"), CASES)
def test_task_contract(task, optim, request):
    task_cfg = compose_cfg(f"task={task}").task
    budget = ["task.steps=6", "task.epochs=null", "task.batch_size=8"] if "epochs" in task_cfg else ["task.steps=6"]
    if "train_steps" in task_cfg:  # a sampling task: `steps` is its grid of sampler step counts
        budget = ["task.train_steps=6", "task.steps=[2,4,8]", "task.samples=300", "task.ot_samples=100"]
    overrides = [f"task={task}", f"optim={optim}", "device=cpu", *budget, *data_dir_for(task, request)]
    cfg = compose_cfg(*overrides)
    assert cfg.task._target_.startswith("tasks."), "a task config points at a class in tasks/"
    t, opts, rt = build_all(cfg)
    for model in task_cfg.get("models", []):  # a default model with nothing to train (exact scores):
        if t.models():                        # the first listed model that trains
            break
        cfg = compose_cfg(*overrides, f"model={model}")
        t, opts, rt = build_all(cfg)
    assert set(opts) == set(t.models())
    records = []
    history = History(t.primary, {})

    def emit(record):
        records.append(record)
        history.add(record)
        return None

    steps, reason = train(t, opts, rt, emit, log_every=2, eval_every=3)
    assert (steps, reason) == (6, None)
    assert [r["step"] for r in records] == [2, 3, 4, 6]
    if hasattr(t, "assess"):  # measurements after training, steps going on from the last one
        assert assess(t, emit, 0.0) is None
        assert [r["step"] for r in records[4:]] == sorted({r["step"] for r in records[4:]}) and records[4]["step"] > 6
    train_keys = {k for k in records[0] if k.startswith("train/")}
    assert any(k.startswith("train/update_norm") for k in train_keys), train_keys  # per role for 2 players
    assert any(k.startswith("train/lr") for k in train_keys), train_keys
    for r in records:
        assert isinstance(r["step"], int) and isinstance(r["time_s"], float)
        assert all("/" in k for k in r if k not in ("step", "time_s")), r
        assert all(math.isfinite(v) for v in r.values()), r
    assert {k for k in records[3] if k.startswith("train/")} == train_keys  # stable key set
    primary = [r[t.primary] for r in records if t.primary in r]
    assert primary and min(primary) >= 0
    if "dataset" in cfg.task:  # classifiers: a training loss, and accuracy from each evaluation
        assert "train/loss" in records[0] and 0 <= records[1]["eval/acc"] <= 1 and "eval/acc" in records[-1]
    fit = t.convergence(t.primary) if hasattr(t, "convergence") else fit_tail(history.series)
    assert fit["conv/points"] >= 3 and fit["conv/x"] in ("step", "diff/nfe")  # a verdict, whoever fits it
    assert fit["conv/kind"] in ("linear", "sublinear", "diverging", "stalled", "cycling", "none")
    assert fit["conv/reason"].startswith(fit["conv/kind"]), fit["conv/reason"]
