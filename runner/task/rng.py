"""A task's own random streams: explicit generators seeded from the run's seed and a name.

A task that draws while it trains or samples (minibatch rows, gradient noise, initial noise,
Brownian paths) draws from a generator of its own rather than torch's global one, so that the
lanes of a group (README "Lanes") draw exactly what their single runs draw, each from its own
task's stream, whatever else runs in the process. The runner seeds the global generators with the
run's seed before it builds the task (runner.run.job.seed_everything); `stream(name)` derives a
generator from that seed and `name`, so a run's streams differ from each other and from the
global sequence that drew its initialisation (the same seed in both would make a first noise
draw equal to an initial point of the same shape).

A stream lives on the CPU unless a task asks for one on its device (the classifier's batch order,
crops and flips, drawn every step: on the device they cost no transfer). Draws on a CPU stream are
moved to the device (`randn`), so such a run's numbers do not depend on the device. A task saves `g.get_state()` in its `state_dict()` so that a resumed run continues the stream.
"""

from __future__ import annotations

import hashlib

import torch


def stream(name: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on `device` for stream `name` of this run (seeded from `torch.initial_seed()`)."""
    text = f"{torch.initial_seed()}/{name}".encode()
    return torch.Generator(device=device).manual_seed(int.from_bytes(hashlib.sha256(text).digest()[:8], "little"))


def randn(gen: torch.Generator, shape: tuple[int, ...] | torch.Size, like: torch.Tensor) -> torch.Tensor:
    """Standard normal numbers of `shape` from `gen`, in `like`'s dtype on `like`'s device."""
    return torch.randn(tuple(shape), dtype=like.dtype, generator=gen).to(like.device)
