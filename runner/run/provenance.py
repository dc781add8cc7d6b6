"""What a run records about itself to be reproduced and its timings compared: `summary.json`'s
`provenance` and the wandb run's config key of the same name.

    record(overrides, seed, device, threads)  # the whole record: ~50 ms the first time in a process, then ~1 ms
    differing(records)                        # the fields in which some runs differ (runner-report)

Git: the commit is that of the code being run, i.e. the checkout that holds the imported
`runner/` package (`git.code`), dirty when `git status` lists anything (modified, staged or
untracked files that are not ignored). Runner installed from a wheel (site-packages, a Docker
image) has no checkout: `git.code` says so, and the installed version stands for the code. When
the working directory is inside another repository (the user's project, calling the runner with
their own configs), its commit and state are recorded too, as `git.cwd`.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

LIBRARIES = ("runner", "torch", "numpy", "scipy", "hydra-core", "omegaconf", "wandb", "pytorch_optimizer",
             "gymnasium", "pot", "torchdiffeq", "torchsde", "torchvision", "scikit-learn", "matplotlib")
ENV_KEYS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "CUBLAS_WORKSPACE_CONFIG",
            "SLURM_JOB_ID", "WANDB_MODE")
GIT_TIMEOUT_S = 3.0  # a hung network filesystem must not hold up the run
PER_RUN = ("command", "argv", "seed", "started_at", "cwd")  # differ between runs by design: not compared


def record(overrides: Sequence[str], seed: int, device: torch.device,
           threads: Mapping[str, Any] | None = None, cwd: Path | None = None) -> dict[str, Any]:
    """The provenance of a run with these command-line overrides on `device`; `threads` is
    `summary["threads"]` when the runner set them (else torch's own count is read)."""
    import torch  # here, not at the top: runner-report reads records without torch

    cwd = cwd or Path.cwd()
    code = git_state(Path(__file__).resolve().parents[1])  # the runner package
    inside = "root" in code and cwd.resolve().is_relative_to(code["root"])
    user = {} if inside else git_state(cwd)  # the code's own checkout needs no second look
    cuda = device.type == "cuda"
    return {
        "command": shlex.join(["runner", *overrides]),
        "argv": shlex.join(sys.argv),
        "cwd": str(cwd),
        "seed": seed,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": {"code": dict(code), **({"cwd": user} if user.get("root") not in (None, code.get("root")) else {})},
        "python": platform.python_version(),
        "versions": {**versions(), "torch": torch.__version__},  # with its build tag (+cu130, +cpu)
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,  # on CPU it would only load the library
        "host": platform.node(),
        "os": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "threads": int((threads or {}).get("intra_op") or torch.get_num_threads()),
        "env": {k: os.environ[k] for k in ENV_KEYS if k in os.environ},
    }


@functools.cache  # once per process: installed packages do not change under a running sweep
def versions(names: Sequence[str] = LIBRARIES) -> dict[str, str | None]:
    """Installed versions from the packages' metadata (no import, no subprocess); None if absent.
    `runner` says `editable` when installed with `pip install -e`."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            out[name] = None
            continue
        out[name] = dist.version
        direct = json.loads(dist.read_text("direct_url.json") or "{}")  # PEP 610, written by pip
        if direct.get("dir_info", {}).get("editable"):
            out[name] += " (editable)"
    return out


def _git(folder: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


@functools.cache  # once per process: its code was imported at the start, later edits do not run
def git_state(folder: Path) -> dict[str, Any]:
    """{root, commit, dirty} of the git checkout `folder` belongs to; {note} when it belongs to
    none (a wheel in site-packages, a folder outside any repository, no git installed). A
    package folder that lies inside a repository without being tracked by it (a virtual
    environment inside a checkout) does not count as that checkout's code."""
    if not folder.is_dir():
        return {"note": f"{folder} is not a folder"}
    root = _git(folder, "rev-parse", "--show-toplevel")
    if root is None:
        return {"note": f"not in a git checkout ({folder})"}
    if (folder / "__init__.py").exists() and not _git(folder, "ls-files", "--", "__init__.py"):
        return {"note": f"{folder} is not tracked by the checkout around it ({root.strip()}): installed, not checked out"}
    status = _git(folder, "status", "--porcelain=v2", "--branch") or ""
    commit = next((line.split()[2] for line in status.splitlines() if line.startswith("# branch.oid")), None)
    changed = [line for line in status.splitlines() if not line.startswith("#")]
    return {"root": root.strip(), "commit": None if commit == "(initial)" else commit, "dirty": bool(changed),
            "changed_files": len(changed)}


@functools.cache
def cpu_model() -> str:
    """The CPU's marketing name: /proc/cpuinfo on Linux, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def flatten(prov: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The comparable fields as text (`versions.torch`, `git.code.commit`, ...), per-run ones left out."""
    out: dict[str, str] = {}
    for key, value in prov.items():
        name = f"{prefix}{key}"
        if not prefix and key in PER_RUN or key in ("root", "changed_files", "note"):
            continue
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, str) else json.dumps(value)
    return out


def differing(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The fields whose values are not the same in every record (a field some lack counts)."""
    flat = [flatten(r) for r in records]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    return [k for k in keys if len({f.get(k) for f in flat}) > 1]
