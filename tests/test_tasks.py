"""The contract every task meets, run over every `conf/task/*.yaml` with a representative set
of optimizers: build from config, train a few steps through the runner's loop, log finite
namespaced metrics with a stable key set, evaluate, and report its primary metric."""

from __future__ import annotations

import math

import pytest
from hydra.utils import get_method

from runner.convergence import fit_tail
from runner.loop import train
from runner.metrics import History
from tests.helpers import TASKS, build_all, compose_cfg


def data_dir_for(task: str, request: pytest.FixtureRequest) -> list[str]:
    """Tasks with a torchvision dataset read the fake files of the fixture named after it."""
    cfg = compose_cfg(f"task={task}")
    if "dataset" not in cfg.task or get_method(cfg.task.dataset._target_).__name__ == "digits":
        return []
    fake = request.getfixturevalue(f"fake_{get_method(cfg.task.dataset._target_).__name__}")
    return [f"data_dir={fake.root}"]


@pytest.mark.parametrize("optim", ["sgd", "adam", "muon"])
@pytest.mark.parametrize("task", TASKS)
def test_task_contract(task, optim, request):
    budget = ["task.epochs=null", "task.batch_size=8"] if "epochs" in compose_cfg(f"task={task}").task else []
    cfg = compose_cfg(f"task={task}", f"optim={optim}", "device=cpu", "task.steps=6", *budget,
                      *data_dir_for(task, request))
    assert cfg.task._target_.startswith("tasks."), "a task config points at a class in tasks/"
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
    train_keys = {k for k in records[0] if k.startswith("train/")}
    assert any(k.startswith("train/update_norm") for k in train_keys), train_keys  # per role for 2 players
    assert any(k.startswith("train/lr") for k in train_keys), train_keys
    for r in records:
        assert isinstance(r["step"], int) and isinstance(r["time_s"], float)
        assert all("/" in k for k in r if k not in ("step", "time_s")), r
        assert all(math.isfinite(v) for v in r.values()), r
    assert {k for k in records[-1] if k.startswith("train/")} == train_keys  # stable key set
    assert t.primary in records[0] and records[0][t.primary] >= 0
    if "dataset" in cfg.task:  # classifiers: a training loss, and accuracy from each evaluation
        assert "train/loss" in records[0] and 0 <= records[1]["eval/acc"] <= 1 and "eval/acc" in records[-1]
    assert fit_tail(history.series)["conv/points"] >= 3
