"""Config validation: every config in every group composes and its keys fit the real class;
bad values are reported all at once with key, value and what is allowed."""

from __future__ import annotations

import pytest
from omegaconf import open_dict

from runner.validate import ConfigError, validate
from tests.helpers import MODELS, OPTIMS, SCHEDS, TASKS, compose_cfg


def choices(cfg) -> dict:
    return dict(cfg.hydra.runtime.choices)


def a_task_for(model: str) -> str:
    return next(t for t in TASKS if model in compose_cfg(f"task={t}").task.models)


@pytest.mark.parametrize("overrides", [*([f"task={t}"] for t in TASKS), *([f"optim={o}"] for o in OPTIMS),
                                       *([f"model={m}", f"task={a_task_for(m)}"] for m in MODELS),
                                       *([f"sched={s}"] for s in SCHEDS), ["logger=none"]])
def test_every_shipped_config_is_valid(overrides):
    cfg = compose_cfg(*overrides)
    validate(cfg, choices(cfg))


def test_all_problems_are_reported_together():
    cfg = compose_cfg("optim=muon", "optim.lr=0", "optim.aux.lr=-3", "precision=fp16", "eval_every=-1",
                      "task.epochs=5", "task.steps=7", "metrics.fit_tail=0", "logger.mode=sometimes",
                      "+sched.T_maxx=3", "sched=cosine")
    with pytest.raises(ConfigError) as err:
        validate(cfg, choices(cfg))
    problems = "\n".join(err.value.problems)
    for needle in ("optim.lr=0: the learning rate must be > 0", "optim.aux.lr=-3",
                   "precision='fp16': allowed: auto, fp32, bf16", "eval_every=-1",
                   "task.epochs=5, task.steps=7: set exactly one budget", "metrics.fit_tail=0",
                   "logger.mode='sometimes': allowed: online, offline, disabled",
                   "sched.T_maxx: not an argument of torch.optim.lr_scheduler.CosineAnnealingLR"):
        assert needle in problems, (needle, problems)
    assert len(err.value.problems) == 8


def test_a_model_that_does_not_fit_the_task_names_those_that_do():
    cfg = compose_cfg("model=resnet18")
    with open_dict(cfg):
        cfg.task.models = ["mlp", "cnn"]
    with pytest.raises(ConfigError, match="model=resnet18: does not fit task=digits; models that fit: mlp, cnn"):
        validate(cfg, choices(cfg))


def test_cuda_asked_for_where_there_is_none():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = compose_cfg("device=cuda")
    with pytest.raises(ConfigError, match="no CUDA device is visible; use device=auto or device=cpu"):
        validate(cfg, choices(cfg))


def test_unknown_task_argument_is_caught():
    cfg = compose_cfg("+task.batchsize=32")
    with pytest.raises(ConfigError, match="task.batchsize: not an argument of tasks.classifier.Classifier"):
        validate(cfg, choices(cfg))
