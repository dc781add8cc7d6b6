"""Where and in what precision a run computes: device choice, autocast, model placement."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import torch
from torch import nn

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
PRECISIONS = ("auto", "fp32", "bf16")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass(frozen=True)
class Runtime:
    """What a task needs to know about the hardware, decided once by the runner."""

    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None = full fp32
    compile: bool = False

    @classmethod
    def from_config(cls, device: str, precision: str, compile: bool) -> Runtime:
        dev = pick_device(device)
        if precision == "auto":
            precision = "bf16" if dev.type == "cuda" else "fp32"
        return cls(dev, torch.bfloat16 if precision == "bf16" else None, compile)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @property
    def channels_last(self) -> bool:
        # NHWC lets cuDNN pick tensor-core convolution kernels; on CPU it buys nothing here.
        return self.device.type == "cuda"

    def place(self, model: nn.Module) -> nn.Module:
        """Move a freshly built model to the device (channels_last for conv nets on CUDA)."""
        model = model.to(self.device)
        if self.channels_last and any(isinstance(m, nn.Conv2d) for m in model.modules()):
            model = model.to(memory_format=torch.channels_last)
        return model

    def forward_fn(self, model: nn.Module) -> nn.Module:
        """The callable to run forward passes with: compiled when `compile` is on."""
        return torch.compile(model) if self.compile else model

    def sync(self) -> None:
        """Wait for queued device work, so wall-clock timers measure finished work."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
