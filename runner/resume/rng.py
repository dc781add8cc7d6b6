"""Every random number generator a run draws from (python, numpy, torch, CUDA), as plain values.

A checkpoint is read with `torch.load(weights_only=True)`, which accepts tensors and Python's own
containers and numbers, nothing else: Python's and numpy's states are kept as lists of ints, torch's
and CUDA's as the uint8 tensors torch gives.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    kind, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    out = {"python": [version, list(internal), gauss],
           "numpy": [kind, key.tolist(), int(pos), int(has_gauss), float(cached)],
           "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def restore(saved: Mapping[str, Any]) -> None:
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, key, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((kind, np.asarray(key, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(saved["torch"])
    if "cuda" in saved and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda"])


def problem(saved: Any) -> str | None:
    """Why `saved` (read from a file) cannot be restored, or None: tried on the live generators,
    which are put back as they were. CUDA's states are only checked for their type, since torch
    applies them when CUDA starts."""
    if not isinstance(saved, Mapping) or not {"python", "numpy", "torch"} <= saved.keys():
        return "its RNG state is not a mapping with python, numpy and torch"
    cuda = saved.get("cuda", [])
    if not (isinstance(cuda, list) and all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8 for t in cuda)):
        return "its CUDA RNG state is not a list of uint8 tensors"
    before = state()
    try:
        restore({k: v for k, v in saved.items() if k != "cuda"})
    except Exception as e:  # noqa: BLE001 - anything a malformed state makes the generators raise
        return f"its RNG state cannot be restored ({type(e).__name__}: {e})"
    finally:
        restore(before)
    return None
