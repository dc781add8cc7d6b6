"""Classifier lanes (tasks/classifier/lanes.py): the same sweep through the basic launcher and
through `hydra/launcher=lanes` gives the same records and summaries, for the digits, MNIST and
CIFAR tasks (the bundled digits and the tiny on-disk fixtures of tests/conftest.py, no download)
with the MLP, the CNN and the BatchNorm networks (fastnet, resnet18), with augmentation, weight
decay, the MSE loss and label smoothing: float64 to 1e-12 relative; float32 within the tolerance
below, with the same verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import data_dir_for
from tests.lanes.test_lanes import float32_sweeps, same_sweeps, sweep

BUDGET = ("task.epochs=null", "task.steps=12", "log_every=3", "eval_every=6")

CASES = {
    "digits-mlp-adam": ("task=digits", "optim=adam", "optim.lr=0.001,0.01"),
    "digits-cnn-sgd-decay": ("task=digits", "model=cnn", "model.channels=[4,8]", "model.hidden=16", "optim=sgd",
                             "optim.lr=0.05", "optim.weight_decay=0,0.01", "task.batch_size=32"),
    "digits-mse-smoothing-momentum": ("task=digits", "model.hidden=[32]", "task.loss=mse", "task.label_smoothing=0.1",
                                      "optim=momentum", "optim.lr=0.05,0.1"),
    "mnist-cnn-adamw": ("task=mnist", "model=cnn", "model.channels=[4]", "model.hidden=8", "optim=adamw",
                        "optim.lr=0.001", "optim.weight_decay=0.1", "task.batch_size=8"),
    "cifar-augment-mlp-rmsprop": ("task=cifar", "model=mlp", "model.hidden=[16]", "task.augment=true",
                                  "optim=rmsprop", "optim.lr=0.001,0.01", "task.batch_size=8"),
    "cifar-fastnet-batchnorm": ("task=cifar", "model=fastnet", "model.widths=[8,8,8]", "model.stem=4",
                                "task.augment=true", "optim=sgd", "optim.lr=0.01", "task.batch_size=8"),
    "cifar100-resnet18-batchnorm": ("task=cifar100", "model=resnet18", "optim=sgd", "optim.lr=0.01",
                                    "task.batch_size=2", "task.steps=2", "log_every=1", "eval_every=2",
                                    "task.eval_batch_size=5"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_classifier_lanes_equal_single_runs_in_float64(capsys, tmp_path, request, case):
    args = CASES[case]
    out = same_sweeps(capsys, tmp_path, *BUDGET, *args, *data_dir_for(args[0].split("=")[1], request),
                      "precision=fp64", "seed=0,1", "threads=1")
    assert "jobs as one batched computation" in out and "one by one" not in out


# float32: a lane's batched kernels (vmap's batched matmuls) sum in another order than the single
# run's, a relative rounding of ~1e-7 per operation. With SGD and momentum at stable step sizes that
# stays at its size (measured: at most 4.4e-7 relative over 40 steps, as between two single runs with
# 1 and 2 threads), so 1e-5 leaves room for other CPUs' kernels, while a wrong batch, lane or step
# differs by 1e-2 or more; at lr=0.2 with momentum 0.9 (unstable) the same rounding grew to 2e-3.
# Adam's m / sqrt(v) divides out a gradient's size, so where a gradient is a small difference of
# large terms its rounding becomes a step of order lr: one lane of four measured 8e-4 relative at
# step 40 (the others 1e-6; the same lanes in float64 agree to 1e-12), so Adam is held to 1e-2 and
# to the same verdicts. eval/acc counts predictions: equal in every run measured.
@pytest.mark.parametrize("optim,rtol", [(("optim=momentum", "optim.lr=0.01,0.05"), 1e-5),
                                        (("optim=adam", "optim.lr=0.001,0.01"), 1e-2)], ids=["momentum", "adam"])
def test_classifier_lanes_in_float32_match_within_rounding_and_give_the_same_verdicts(capsys, tmp_path, optim, rtol):
    args = ("task=digits", "task.epochs=null", "task.steps=40", "log_every=4", "eval_every=20", *optim,
            "seed=0,1", "precision=fp32", "threads=1")
    worst = float32_sweeps(capsys, tmp_path, "eval/acc", *args)
    assert 0 < worst <= rtol, worst  # 0: the lanes would not be batched kernels at all


def test_jobs_that_differ_in_a_task_key_form_separate_groups(capsys, tmp_path: Path):
    code, out = sweep(capsys, tmp_path, "task=digits", *BUDGET, "task.batch_size=32,64", "seed=0,1",
                      "hydra/launcher=lanes")
    assert code == 0 and out.count("2 jobs as one batched computation") == 2, out
