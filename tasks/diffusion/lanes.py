"""task=diffusion with model=exact as lanes: the sampling of a group's runs (a seed sweep) stacked
into one batch of samples, each lane's numbers those of its single run.

Nothing is trained; the work is task.py's `assess()`: at every step count N the sampler carries the
initial noise to t_min. Each lane's random numbers are drawn by its own task (`draw()`, from its
run's generator, in its single run's order): its initial noise x_T, its Brownian path, its two
target samples. The lanes' x_T are stacked along the sample axis (rows: lane 0's samples, then lane
1's, ...) and `LaneBrownian` answers every query of the path with each lane's own path's answer,
stacked the same way, so each lane's path sees the queries its single run's sees, in that order.
The lanes share the target and the process (their configs are equal but for the seed and the
lane-safe keys), and every rowwise sampler (samplers.py) computes each row from that row alone:
one call steps every lane's samples as its single run steps them. The adaptive solves (dopri5 as
the sampler, dopri8 as the reference of a deterministic sampler on a mixture) choose their steps
from the error of all rows together, so they run lane by lane. Every record is its lane's own
task's (`measure()`: diff/err against its reference, W2 and MMD against its target samples), kept
in that task for its convergence fit and figures.
"""

from __future__ import annotations

import time
from collections.abc import Container, Iterator, Mapping, Sequence
from typing import Any

import torch
import torchsde
from torch import Tensor

from tasks.diffusion.closed_forms import rms_distance


class LaneBrownian(torchsde.BaseBrownian):
    """The Brownian paths of the lanes as one: each query answered by every lane's path, stacked."""

    def __init__(self, paths: Sequence[torchsde.BrownianInterval]):
        self.paths = list(paths)

    def __call__(self, ta, tb=None, return_U=False, return_A=False):  # noqa: N803 - torchsde's names
        parts = [p(ta, tb, return_U=return_U, return_A=return_A) for p in self.paths]
        if isinstance(parts[0], tuple):
            return tuple(torch.cat(c) for c in zip(*parts))
        return torch.cat(parts)

    def __repr__(self) -> str:
        return f"LaneBrownian({len(self.paths)} paths)"

    @property
    def dtype(self) -> torch.dtype:
        return self.paths[0].dtype

    @property
    def device(self) -> torch.device:
        return self.paths[0].device

    @property
    def shape(self) -> torch.Size:
        return torch.Size((sum(p.shape[0] for p in self.paths), *self.paths[0].shape[1:]))

    @property
    def levy_area_approximation(self) -> str:
        return self.paths[0].levy_area_approximation


class DiffusionLanes:
    primary = "diff/err"
    total_steps = 0  # model=exact: nothing to train

    def __init__(self, tasks: Sequence[Any], sizes: Mapping[str, Sequence[int]]):
        self.tasks, self.first = list(tasks), tasks[0]
        self.counts = [t.samples for t in tasks]  # `samples` is lane-safe: each lane's rows of the stack

    def models(self) -> Mapping[str, Any]:
        return {}

    def train_step(self, opts: Mapping[str, Any], measure: bool) -> dict[str, Tensor]:
        raise RuntimeError("task=diffusion model=exact trains nothing: its lanes have no step")

    def evaluate(self) -> dict[str, Tensor]:
        return {}

    def assess(self, ended: Container[int] = ()) -> Iterator[list[dict[str, float] | None]]:
        """One list per step count N, each lane's record (None for a lane in `ended`, which stopped:
        its single run measures no further N)."""
        first, tasks = self.first, self.tasks
        drawn = [t.draw() for t in tasks]
        x_T, bm = torch.cat([x for x, _ in drawn]), LaneBrownian([b for _, b in drawn])
        if first.rowwise_reference:
            fine, coarse = (c.split(self.counts) for c in first.references(x_T, bm))
            refs = [(f, rms_distance(f, c)) for f, c in zip(fine, coarse)]
        else:
            refs = [t.reference(x, b) for t, (x, b) in zip(tasks, drawn)]
        floors = [t.floors(*ref) for t, ref in zip(tasks, refs)]
        for n_steps in first.steps:
            t0 = time.perf_counter()
            if first.sampler.rowwise:
                x, nfe = first.sampler(first.dyn, x_T, first.grid(n_steps), bm)
                out = [(xi, nfe) for xi in x.split(self.counts)]
            else:
                out = [t.sampler(t.dyn, x, t.grid(n_steps), b) for t, (x, b) in zip(tasks, drawn)]
            first.rt.sync()
            seconds = time.perf_counter() - t0  # the group's time for all lanes (as time_s, a shared clock)
            yield [None if i in ended else t.measure(n_steps, xi, nfe, seconds, ref[0], fl)
                   for i, (t, (xi, nfe), ref, fl) in enumerate(zip(tasks, out, refs, floors))]
        for i, t in enumerate(tasks):
            if i not in ended:
                t.shown[0] = t.fresh[:, :2].cpu()

    def unstack(self) -> None:
        """Nothing to write back: each lane's records and samples are in its own task already."""
