"""Shared pytest fixtures."""

from __future__ import annotations

import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# --- Fake MNIST / CIFAR folders in torchvision's on-disk formats (tiny, written per test) ---------


@dataclass
class FakeImages:
    """A data folder the loaders can read, and what was written into it (torchvision's layout:
    N x H x W uint8 for MNIST, N x H x W x C uint8 for CIFAR)."""

    root: Path
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _fake_pixels(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = rng.integers(0, 256, size=shape, dtype=np.uint8)
    x[0, 0, 0] = 0  # both ends of the range, so the scaling to [0, 1] is checked at 0 and 1
    x[0, 0, 1] = 255
    return x


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX file as in yann.lecun.com/exdb/mnist: big-endian magic 0x08 (uint8) << 8 | ndim
    (2049 for labels, 2051 for images), one big-endian uint32 per dimension, then the bytes."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


@pytest.fixture
def fake_mnist(tmp_path: Path) -> FakeImages:
    """32 train / 16 test 28x28 MNIST images with random pixels, labels 0..9 cycling."""
    rng = np.random.default_rng(0)
    fake = FakeImages(tmp_path / "data", _fake_pixels(rng, (32, 28, 28)), np.arange(32, dtype=np.uint8) % 10,
                      _fake_pixels(rng, (16, 28, 28)), (np.arange(16, dtype=np.uint8) * 3) % 10)
    raw = fake.root / "MNIST" / "raw"  # torchvision reads the uncompressed files from here
    raw.mkdir(parents=True)
    for split, x, y in (("train", fake.x_train, fake.y_train), ("t10k", fake.x_test, fake.y_test)):
        _write_idx(raw / f"{split}-images-idx3-ubyte", x)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", y)
    return fake


def _fake_cifar_integrity(monkeypatch: pytest.MonkeyPatch) -> None:
    # torchvision checks every CIFAR file against the md5 of the real download, which files
    # written by a test can never match; here a file only has to exist.
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity",
                        lambda fpath, md5=None: os.path.isfile(fpath))


def _write_cifar_batch(path: Path, images: np.ndarray, labels: dict[str, list[int]]) -> None:
    # One row per image, channel-major (1024 red, 1024 green, 1024 blue, each row by row), as in
    # the real python-pickled batches; str keys are what torchvision sees after latin1 decoding.
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3 * 32 * 32)
    with open(path, "wb") as f:
        pickle.dump({"data": rows, **labels, "filenames": [f"{i}.png" for i in range(len(images))]}, f, protocol=2)


def _pixel_with_known_colour(x: np.ndarray) -> np.ndarray:
    x[1, 2, 3] = (255, 0, 128)  # image 1, row 2, column 3: red, green, blue tell the channel order
    return x


@pytest.fixture
def fake_cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeImages:
    """30 train (6 in each of data_batch_1..5) / 10 test 32x32 RGB images; md5 checks relaxed."""
    rng = np.random.default_rng(1)
    fake = FakeImages(tmp_path / "data", _pixel_with_known_colour(_fake_pixels(rng, (30, 32, 32, 3))),
                      np.arange(30) % 10, _fake_pixels(rng, (10, 32, 32, 3)), np.arange(10)[::-1].copy())
    folder = fake.root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(5):
        part = slice(6 * b, 6 * b + 6)
        _write_cifar_batch(folder / f"data_batch_{b + 1}", fake.x_train[part],
                           {"labels": fake.y_train[part].tolist()})
    _write_cifar_batch(folder / "test_batch", fake.x_test, {"labels": fake.y_test.tolist()})
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}, f, protocol=2)
    _fake_cifar_integrity(monkeypatch)
    return fake


@pytest.fixture
def fake_cifar100(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeImages:
    """20 train / 10 test 32x32 RGB CIFAR-100 images, fine labels up to 99; md5 checks relaxed."""
    rng = np.random.default_rng(2)
    fake = FakeImages(tmp_path / "data", _pixel_with_known_colour(_fake_pixels(rng, (20, 32, 32, 3))),
                      (np.arange(20) * 7) % 100, _fake_pixels(rng, (10, 32, 32, 3)), np.arange(90, 100))
    folder = fake.root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, x, y in (("train", fake.x_train, fake.y_train), ("test", fake.x_test, fake.y_test)):
        _write_cifar_batch(folder / name, x, {"fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist()})
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"fine{i}" for i in range(100)],
                     "coarse_label_names": [f"coarse{i}" for i in range(20)]}, f, protocol=2)
    _fake_cifar_integrity(monkeypatch)
    return fake


@pytest.fixture
def fake_no_download(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Makes every torchvision MNIST/CIFAR download fail at once, without touching the network,
    as it would offline. Returns the URLs that were asked for."""
    from urllib.error import URLError

    import torchvision.datasets.cifar
    import torchvision.datasets.mnist

    asked: list[str] = []

    def refuse(url: str, *args, **kwargs):
        asked.append(url)
        raise URLError("no network in tests")

    # The dataset classes call the name they imported into their own module.
    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", refuse)
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", refuse)
    return asked


# --- GPU-only tests are skipped where no CUDA device is visible (CI) ---------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
