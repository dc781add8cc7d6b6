"""Image classification datasets, loaded whole into tensors (the classifier keeps them on the device).

`digits` is scikit-learn's bundled 8x8 handwritten digits: real data shipped inside the package,
so the default run needs no network. MNIST and CIFAR come from torchvision, downloaded once into
`data_dir`. Nothing here falls back to other or fake data: a missing dataset is an error that
names the folder and what to put in it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


class DataMissing(RuntimeError):
    """A dataset is neither on disk nor downloadable."""


@dataclass
class ImageData:
    x_train: Tensor  # float32, N x C x H x W, values in [0, 1]
    y_train: Tensor  # int64 class indices
    x_test: Tensor
    y_test: Tensor
    num_classes: int


def digits(root: str | None = None) -> ImageData:
    """1,797 8x8 grey-scale digits from scikit-learn, split 80/20 (stratified, fixed seed)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None] / 16.0  # pixel values are 0..16
    x_tr, x_te, y_tr, y_te = train_test_split(x, bunch.target, test_size=0.2, random_state=0, stratify=bunch.target)
    return ImageData(torch.from_numpy(x_tr), torch.from_numpy(y_tr).long(),
                     torch.from_numpy(x_te), torch.from_numpy(y_te).long(), 10)


digits.train_size = 1437


def mnist(root: str) -> ImageData:
    """MNIST (60,000 train / 10,000 test, 28x28 grey-scale) via torchvision."""
    from torchvision.datasets import MNIST

    train, test = _torchvision(MNIST, root, "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte")
    return ImageData(train.data[:, None].float() / 255, train.targets.long(),
                     test.data[:, None].float() / 255, test.targets.long(), 10)


mnist.train_size = 60000


def cifar10(root: str) -> ImageData:
    """CIFAR-10 (50,000 train / 10,000 test, 32x32 RGB) via torchvision."""
    from torchvision.datasets import CIFAR10

    return _cifar(*_torchvision(CIFAR10, root, "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}"), 10)


cifar10.train_size = 50000


def cifar100(root: str) -> ImageData:
    """CIFAR-100 (50,000 train / 10,000 test, 32x32 RGB, 100 fine labels) via torchvision."""
    from torchvision.datasets import CIFAR100

    return _cifar(*_torchvision(CIFAR100, root, "cifar-100-python/{train,test,meta}"), 100)


cifar100.train_size = 50000


def _cifar(train, test, num_classes: int) -> ImageData:
    def images(ds) -> Tensor:  # torchvision keeps CIFAR as N x H x W x C uint8
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).float() / 255

    return ImageData(images(train), torch.tensor(train.targets), images(test), torch.tensor(test.targets), num_classes)


def _torchvision(cls, root: str, expected: str):
    folder = Path(root).expanduser()
    try:
        return cls(str(folder), train=True, download=False), cls(str(folder), train=False, download=False)
    except RuntimeError:
        pass  # not there yet: download it once
    made = next((p for p in (*reversed(folder.parents), folder) if not p.exists()), None)  # the download makes it
    try:
        return cls(str(folder), train=True, download=True), cls(str(folder), train=False, download=True)
    except (OSError, RuntimeError) as e:
        reason = " ".join(str(e).split())  # torchvision's messages span lines; the summary keeps one
        if made is not None and _remove_empty(made):
            reason += f"; {made}, made for the download, was removed again"
        raise DataMissing(
            f"{cls.__name__} is not in {folder} and could not be downloaded ({type(e).__name__}: {reason}). "
            f"Run once with network access (it downloads into data_dir), or put torchvision's files "
            f"there ({folder}/{expected}), or point data_dir=... or RUNNER_DATA_DIR at a folder that has them."
        ) from e


def _remove_empty(top: Path) -> bool:
    """Remove `top` if it holds nothing but empty folders (a failed download's); True if removed."""
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()
    try:
        top.rmdir()
    except OSError:
        return False
    return True
