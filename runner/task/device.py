"""Where and in what precision a run computes: device choice, CPU threads, autocast, model placement.

Threads: torch's default (one per core) is slow whenever the cores are shared, by other load or
by the parallel jobs of a sweep: every op waits for its slowest thread. So a run leaves one CPU
to the rest and takes its share of the others (the measurements are in README, "Everyday commands").
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

# On CUDA the host thread only launches kernels (the data lives on the device); a few threads
# serve the small CPU-side pieces (figures, fits). Not measured: no GPU where this was written.
CUDA_HOST_THREADS = 4
_threads_source = "torch default"
_blas_threads: int | None = None  # what this process last set numpy/scipy's BLAS pools to


def usable_cpus(env: Mapping[str, str] = os.environ) -> int:
    """CPUs this process may run on: its affinity mask (taskset, cpusets), at most SLURM's
    `SLURM_CPUS_PER_TASK` (a job step may see the whole node)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    slurm = env.get("SLURM_CPUS_PER_TASK", "")
    return max(min(n, int(slurm)) if slurm.isdigit() else n, 1)


def parallel_jobs(hc: Any, cpus: int | None = None) -> int:
    """Jobs of a sweep running at once in this machine: the joblib launcher's `n_jobs` (-1 = one
    per CPU, -2 all but one, as joblib counts), else 1 (one run, or jobs one after another)."""
    n_jobs = hc.launcher.get("n_jobs") if hc.mode.name == "MULTIRUN" else None
    if not isinstance(n_jobs, int) or n_jobs == 0:
        return 1
    return max(n_jobs if n_jobs > 0 else (cpus or usable_cpus()) + 1 + n_jobs, 1)


def auto_threads(cpus: int, jobs: int, device_type: str, env: Mapping[str, str]) -> tuple[int, str]:
    """What `threads=auto` means: an `OMP_NUM_THREADS` in the environment (the user's, or joblib's
    own cpus // n_jobs in its workers) wins; else one CPU is left to the rest of the machine (the
    wandb service, the launcher, other users) and each parallel job gets its share of the others,
    a CUDA run at most CUDA_HOST_THREADS. On 2 CPUs that is 1 thread: measured faster there."""
    omp = env.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isdigit() and int(omp) >= 1:
        return int(omp), "OMP_NUM_THREADS"
    share = max((cpus - 1) // max(jobs, 1), 1)
    source = f"auto: {cpus} cpu{'s' * (cpus > 1)} / {jobs} job{'s' * (jobs > 1)}"
    if device_type == "cuda" and share > CUDA_HOST_THREADS:
        return CUDA_HOST_THREADS, f"{source}, cuda host cap"
    return share, source


def set_threads(threads: str | int, device_type: str, jobs: int) -> dict[str, Any]:
    """Apply `threads` (auto or N) to torch's intra-op pool and to numpy/scipy's BLAS, as
    OMP_NUM_THREADS=N would; return `threads_in_use()`. The inter-op pool is left alone: eager
    ops never use it (only torch.jit.fork), and it can be set once per process, which a sweep
    run in one process would break."""
    global _threads_source
    if threads == "auto":
        n, _threads_source = auto_threads(usable_cpus(), jobs, device_type, os.environ)
    else:
        n, _threads_source = int(threads), "config"
    global _blas_threads
    torch.set_num_threads(n)
    if n != _blas_threads:  # threadpoolctl scans the loaded libraries: 5-40 ms, a lot for a sweep's tiny jobs
        from threadpoolctl import threadpool_limits

        threadpool_limits(n, user_api="blas")
        _blas_threads = n
    return threads_in_use()


def threads_in_use() -> dict[str, Any]:
    """The thread counts this process computes with, and what chose them (for summary.json)."""
    return {"intra_op": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
            "source": _threads_source}


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
    dtype: torch.dtype | None  # autocast dtype; None = no autocast
    compile: bool = False
    param_dtype: torch.dtype = torch.float32  # of parameters and data: float64 with precision=fp64

    @classmethod
    def from_config(cls, device: str, precision: str, compile: bool, job_num: int | None = None) -> Runtime:
        dev = pick_device(device, job_num)
        if dev.type == "cuda" and dev.index is not None:
            torch.cuda.set_device(dev)  # libraries that use the current device follow the job's GPU
        if precision == "auto":
            precision = "bf16" if dev.type == "cuda" else "fp32"
        return cls(dev, torch.bfloat16 if precision == "bf16" else None, compile,
                   torch.float64 if precision == "fp64" else torch.float32)

    @property
    def precision(self) -> str:
        """The name summary.json records: fp64, bf16 (autocast over fp32 parameters) or fp32."""
        return "fp64" if self.param_dtype == torch.float64 else "bf16" if self.dtype == torch.bfloat16 else "fp32"

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @property
    def channels_last(self) -> bool:
        # NHWC lets cuDNN pick tensor-core convolution kernels; on CPU it buys nothing here.
        return self.device.type == "cuda"

    def place(self, model: nn.Module) -> nn.Module:
        """Move a freshly built model to the device in `param_dtype` (channels_last for conv nets on CUDA)."""
        model = model.to(device=self.device, dtype=self.param_dtype)
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
