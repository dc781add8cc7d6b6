"""Networks for the classifier tasks, built from `conf/model/*.yaml`.

Each constructor takes the numbers from its config and, from the task, the input shape
(channels, height, width) and the number of classes, so one config fits 8x8 digits, 28x28
MNIST and 32x32 CIFAR alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision
from torch import nn


def mlp(in_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (256, 256)) -> nn.Module:
    """Fully connected ReLU network on the flattened image."""
    widths = [int(torch.tensor(in_shape).prod()), *hidden]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], num_classes))


def cnn(in_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (32, 64), hidden: int = 128) -> nn.Module:
    """LeNet-like: 5x5 convolutions with 2x2 max-pooling, then two fully connected layers."""
    layers: list[nn.Module] = []
    c = in_shape[0]
    for width in channels:
        layers += [nn.Conv2d(c, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2)]
        c = width
    features = nn.Sequential(*layers, nn.Flatten())
    with torch.no_grad():  # size of the flattened features for this input shape
        n = features(torch.zeros(1, *in_shape)).shape[1]
    return nn.Sequential(features, nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def resnet18(in_shape: Sequence[int], num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 with the usual stem for small images: a 3x3 stride-1 first
    convolution and no max-pool, so 32x32 inputs keep 4x4 maps before the global pool."""
    net = torchvision.models.resnet18(num_classes=num_classes)
    net.conv1 = nn.Conv2d(in_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


class _ConvGroup(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, momentum: float):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2, ceil_mode=True),
            nn.BatchNorm2d(c_out, momentum=momentum), nn.GELU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out, momentum=momentum), nn.GELU(),
        )


class FastNet(nn.Module):
    """A small, fast CIFAR network in the style of the CIFAR-10 speed records (a narrow 2x2
    stem, three conv-pool-BN blocks of widths 64/256/256, global max-pool, a linear head)
    that reaches the mid-90s on CIFAR-10 in about ten epochs with a good schedule."""

    def __init__(self, in_shape: Sequence[int], num_classes: int, widths: Sequence[int] = (64, 256, 256),
                 stem: int = 24, bn_momentum: float = 0.4, head_scale: float = 1 / 9):
        super().__init__()
        # A 2x2 stem conv (padding 0) sees each 2x2 patch: cheap and enough on 32x32 inputs.
        self.stem = nn.Sequential(nn.Conv2d(in_shape[0], stem, 2, bias=True), nn.GELU())
        c, blocks = stem, []
        for w in widths:
            blocks.append(_ConvGroup(c, w, bn_momentum))
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(c, num_classes, bias=False)
        # Scaling the logits down keeps the initial loss near log(num_classes) with large widths.
        self.head_scale = head_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.blocks(self.stem(x)))) * self.head_scale
