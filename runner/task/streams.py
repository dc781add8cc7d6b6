"""A task's own random streams: generators seeded from the run's seed, apart from the global one.

A task that draws as it trains (a classifier's batch order and crops, a GAN's minibatches and
noise) draws from its own `torch.Generator` rather than torch's global generator: then a lane of a
group (README "Lanes"), whose task is built and seeded as its single run's, draws exactly what its
single run draws, whatever the other lanes do; and what initialises the model (the global
generator, seeded by the runner) and what the task draws later are two streams, not one.
"""

from __future__ import annotations

import numpy as np
import torch


def own_generator(device: torch.device, stream: int) -> torch.Generator:
    """A generator on `device` seeded from the run's seed (`torch.initial_seed()`, which the runner
    sets from `seed` before building the task) and `stream` (a number naming what the task draws),
    mixed by numpy's SeedSequence so that nearby seeds and streams give unrelated generators."""
    seed = int(np.random.SeedSequence([torch.initial_seed(), stream]).generate_state(1, np.uint64)[0])
    return torch.Generator(device=device).manual_seed(seed)
