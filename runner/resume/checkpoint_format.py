"""What a checkpoint file holds, and the checks a file read from a run folder passes before a run
uses it: anyone may have written it, so nothing in it is trusted until it has been checked.

`torch.load(weights_only=True)` builds tensors, dicts, lists, tuples, sets, and Python's numbers and
strings; it refuses anything else (a pickle naming a class or a function) before running it. So a
checkpoint holds only those: `not_plain` finds what does not (a numpy number in a task's state).
"""

from __future__ import annotations

import re
import reprlib
from collections import Counter, OrderedDict
from typing import Any

import torch

from runner.resume import rng

KEYS = ("config_digest", "step", "wandb_id", "rng", "models", "optimizers", "task")
WANDB_ID = re.compile(r"(?!\.{1,2}$)[^/\\#?%:\s]{1,128}")  # what wandb accepts; it names a folder
PLAIN = (bool, int, float, complex, str, bytes, bytearray, type(None), torch.Tensor, torch.nn.Parameter, torch.Size,
         torch.device, torch.dtype)  # what torch.load(weights_only=True) builds besides dicts, lists, tuples and sets


def not_plain(obj: Any, where: str) -> str | None:
    """Where in `obj` something lies that torch.load(weights_only=True) would refuse, or None."""
    if type(obj) in (dict, OrderedDict, Counter):
        return next((w for k, v in obj.items() if (w := not_plain(k, where) or not_plain(v, f"{where}.{k}"))), None)
    if type(obj) in (list, tuple, set):
        return next((w for i, v in enumerate(obj) if (w := not_plain(v, f"{where}[{i}]"))), None)
    return None if type(obj) in PLAIN else f"{where} ({type(obj).__module__}.{type(obj).__qualname__})"


def unreadable(e: Exception) -> str:
    """Why torch could not read a file, in one line; a pickle it refused says what it refused."""
    text = str(e)
    if "WeightsUnpickler error:" in text:  # torch.load(weights_only=True) met a class, a function or an opcode
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0].split(". Please")[0]
        if "Unsupported global" in detail:
            return f"was not read: it holds more than tensors and plain values (weights-only unpickler: {detail})"
    else:
        detail = text.strip().splitlines()[0].split(". ")[0] if text.strip() else ""  # torch adds advice
    return f"cannot be read as a checkpoint ({type(e).__name__}: {detail})"


def problem(state: Any, digest: str) -> str | None:
    """What makes `state`, read from a file, not a checkpoint of the config `digest`, or None."""
    if not isinstance(state, dict):
        return f"holds a {type(state).__name__}, not a checkpoint"
    if missing := [k for k in KEYS if k not in state]:
        return f"lacks {', '.join(missing)}: not a checkpoint of this runner"
    found = state["config_digest"]
    if found != digest:
        return f"is not a checkpoint of this config (its digest: {reprlib.repr(found)}; this config's: {digest})"
    if type(state["step"]) is not int or state["step"] < 0:
        return f"has step={reprlib.repr(state['step'])}, not a step number"
    run_id = state["wandb_id"]
    if run_id is not None and not (isinstance(run_id, str) and WANDB_ID.fullmatch(run_id)):
        return f"has wandb_id={reprlib.repr(run_id)}, not a wandb run id"
    for key in ("models", "optimizers"):
        if not (isinstance(state[key], dict) and all(isinstance(v, dict) for v in state[key].values())):
            return f"has {key} that are not a mapping of state dicts"
    return rng.problem(state["rng"])
