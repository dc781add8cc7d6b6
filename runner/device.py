"""Where and in what precision a run computes: device choice, autocast, model placement."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import torch
from torch import nn

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
PRECISIONS = ("auto", "fp32", "bf16")


def auto_device(cuda_count: int, job_num: int | None = None) -> str:
    """What `device=auto` means: CUDA when present; in a sweep on a machine with several GPUs,
    job k takes GPU k mod their number (jobs run in parallel, e.g. `hydra/launcher=joblib`)."""
    if cuda_count == 0:
        return "cpu"
    if job_num is None or cuda_count == 1:
        return "cuda"
    return f"cuda:{job_num % cuda_count}"


def pick_device(name: str, job_num: int | None = None) -> torch.device:
    """`job_num`: the job's number in a sweep (None for a single run); a device set by name wins."""
    if name == "auto":
        return torch.device(auto_device(torch.cuda.device_count() if torch.cuda.is_available() else 0, job_num))
    return torch.device(name)


@dataclass(frozen=True)
class Runtime:
    """What a task needs to know about the hardware, decided once by the runner."""

    device: torch.device
    dtype: torch.dtype | None  # autocast dtype; None = full fp32
    compile: bool = False

    @classmethod
    def from_config(cls, device: str, precision: str, compile: bool, job_num: int | None = None) -> Runtime:
        dev = pick_device(device, job_num)
        if dev.type == "cuda" and dev.index is not None:
            torch.cuda.set_device(dev)  # libraries that use the current device follow the job's GPU
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
