"""The dataset loaders in `tasks/classifier/datasets.py`, on tiny files written in torchvision's own formats.

The fixtures (`fake_mnist`, `fake_cifar10`, `fake_cifar100`, `fake_no_download`, in conftest.py)
write a few dozen images with known pixels and labels into a temporary `data_dir` and make any
download fail at once, so nothing here touches the network. Run with:

    pytest tests/tasks/test_datasets.py -q
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from runner.task.device import Runtime
from runner.task.optim import OptimizerSet
from tasks.classifier.datasets import DataMissing, ImageData, cifar10, cifar100, digits, mnist
from tasks.classifier.nets import mlp
from tasks.classifier.task import Classifier
from tests.helpers import ROOT


def assert_images(x: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert x.dtype == torch.float32
    assert tuple(x.shape) == shape
    assert x.min() >= 0 and x.max() <= 1


def assert_labels(y: torch.Tensor, expected: np.ndarray) -> None:
    assert y.dtype == torch.int64
    assert y.tolist() == expected.tolist()


def test_mnist_reads_idx_files(fake_mnist, fake_no_download):
    data = mnist(str(fake_mnist.root))

    assert isinstance(data, ImageData) and data.num_classes == 10
    assert_images(data.x_train, (32, 1, 28, 28))
    assert_images(data.x_test, (16, 1, 28, 28))
    assert data.x_train[3, 0, 5, 7] == pytest.approx(fake_mnist.x_train[3, 5, 7] / 255)
    assert data.x_train[0, 0, 0, 1] == 1.0  # 255 -> 1
    torch.testing.assert_close(data.x_train[:, 0], torch.from_numpy(fake_mnist.x_train).float() / 255)
    torch.testing.assert_close(data.x_test[:, 0], torch.from_numpy(fake_mnist.x_test).float() / 255)
    assert_labels(data.y_train, fake_mnist.y_train)
    assert_labels(data.y_test, fake_mnist.y_test)
    assert fake_no_download == []  # read from disk, no download tried


@pytest.mark.parametrize("loader, fake_name, num_classes", [(cifar10, "fake_cifar10", 10),
                                                             (cifar100, "fake_cifar100", 100)])
def test_cifar_reads_pickled_batches(loader, fake_name, num_classes, request, fake_no_download):
    fake = request.getfixturevalue(fake_name)
    data = loader(str(fake.root))

    assert data.num_classes == num_classes
    assert_images(data.x_train, (len(fake.x_train), 3, 32, 32))
    assert_images(data.x_test, (len(fake.x_test), 3, 32, 32))
    # torchvision gives N x H x W x C; the loader must hand out N x C x H x W with R, G, B in order.
    torch.testing.assert_close(data.x_train[1, :, 2, 3], torch.tensor([1.0, 0.0, 128 / 255]))
    torch.testing.assert_close(data.x_train, torch.from_numpy(fake.x_train).permute(0, 3, 1, 2).float() / 255)
    torch.testing.assert_close(data.x_test, torch.from_numpy(fake.x_test).permute(0, 3, 1, 2).float() / 255)
    assert_labels(data.y_train, fake.y_train)  # CIFAR-10: data_batch_1..5 in order
    assert_labels(data.y_test, fake.y_test)
    assert fake_no_download == []


@pytest.mark.parametrize("loader, folder", [(mnist, "MNIST"), (cifar10, "cifar-10-batches-py"),
                                            (cifar100, "cifar-100-python")])
def test_missing_data_that_cannot_be_downloaded_is_an_error_naming_the_folder(
        loader, folder, tmp_path, fake_no_download):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DataMissing) as error:
        loader(str(root))
    message = str(error.value)
    assert str(root) in message
    assert folder in message  # says which files to put there
    assert "data_dir" in message
    assert fake_no_download, "the loader should have tried to download"


def test_digits_is_bundled_and_split_80_20():
    data = digits()

    assert data.num_classes == 10
    assert_images(data.x_train, (1437, 1, 8, 8))
    assert_images(data.x_test, (360, 1, 8, 8))
    assert len(data.x_train) == digits.train_size
    assert data.x_train.max() == 1.0  # scikit-learn's pixels are 0..16
    assert data.y_train.dtype == data.y_test.dtype == torch.int64
    assert set(data.y_train.tolist()) == set(data.y_test.tolist()) == set(range(10))  # stratified


def test_classifier_trains_and_augments_on_cifar(fake_cifar10, fake_no_download):
    torch.manual_seed(0)
    task = Classifier(dataset=functools.partial(cifar10, str(fake_cifar10.root)),
                      runtime=Runtime.from_config("cpu", "fp32", False),
                      model=functools.partial(mlp, hidden=[16]), batch_size=8, steps=3, augment=True)
    opt = OptimizerSet(task.net, functools.partial(torch.optim.SGD, lr=0.1))

    for _ in range(task.total_steps):
        stats = task.train_step({"model": opt}, measure=True)
        assert {"train/loss", "train/grad_norm"} <= stats.keys()
        assert all(torch.isfinite(v).all() for v in stats.values())
    scores = task.evaluate()
    assert torch.isfinite(scores["eval/loss"]) and 0 <= scores["eval/acc"] <= 1

    x = task.x_train[:8]
    crops = task._augment(x)
    assert crops.shape == x.shape and crops.dtype == x.dtype
    for image, crop in zip(x, crops):  # a crop holds only the image's own pixels and zero padding
        assert torch.isin(crop, torch.cat([image.flatten(), torch.zeros(1)])).all()


def test_cli_runs_mnist_from_data_dir(fake_mnist, tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "runner", "task=mnist", "task.epochs=null", "task.steps=6", "task.batch_size=8",
         "eval_every=3", "log_every=2", "logger=none", f"data_dir={fake_mnist.root}", f"hydra.run.dir={run_dir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed", summary
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("train/loss" in r for r in records)
    assert any("eval/acc" in r for r in records)

# No CLI test for task=cifar: the run's subprocess checks the real md5 sums of the CIFAR files,
# which fake files cannot match and which a test cannot patch there. The in-process classifier
# test above covers the CIFAR loader and augmentation instead.
