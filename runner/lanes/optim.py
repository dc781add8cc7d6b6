"""The optimizers of a lane group: one torch optimizer per bucket of lanes that share optimizer
hyperparameters (and schedule), each over that bucket's rows only, so an update never mixes lanes.

Only optimizers whose update is elementwise may stack lanes in one tensor: `ELEMENTWISE`. Those that
couple the elements of a tensor (Muon's orthogonalisation, Shampoo/SOAP/Kron preconditioners,
LAMB/LARS trust ratios, Prodigy's global step estimate, AdamP's projection) would couple the lanes
stacked in it: their configs are refused as lanes (runner/lanes/group.py) and run one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from runner.task.lanes import lane_norms

# torch's elementwise optimizers: each element's update reads only that element's gradient and state
ELEMENTWISE = ("torch.optim.SGD", "torch.optim.Adam", "torch.optim.AdamW", "torch.optim.NAdam",
               "torch.optim.RAdam", "torch.optim.RMSprop", "torch.optim.Adagrad", "torch.optim.Adamax")


class LaneOptimizer:
    """Steps one role's buckets; `step(measure)` returns per-lane gradient and update norms."""

    def __init__(self, buckets: Sequence[Sequence[nn.Parameter]], factories: Sequence[Callable],
                 schedules: Sequence[Callable]):
        self.buckets = [list(b) for b in buckets]
        self.optimizers = [f(b) for f, b in zip(factories, self.buckets, strict=True)]
        self.schedulers = [s for s in (sf(o) for sf, o in zip(schedules, self.optimizers, strict=True))
                           if s is not None]
        self.params = [p for b in self.buckets for p in b]
        self.sizes = [len(b[0]) for b in self.buckets]
        self.create_graph = False
        self.frozen: dict[int, list[Tensor]] = {}  # lane -> its rows when it stopped (diverged)
        self._rows = [(b, i) for b, n in enumerate(self.sizes) for i in range(n)]

    def zero_grad(self) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)

    def _per_lane(self, tensors: Sequence[Tensor]) -> Tensor:
        """Per-lane norms of tensors laid out as `params` (bucket by bucket)."""
        k, out = 0, []
        for b in self.buckets:
            out.append(lane_norms(tensors[k:k + len(b)]))
            k += len(b)
        return torch.cat(out)

    def step(self, measure: bool = False) -> dict[str, Tensor]:
        stats: dict[str, Tensor] = {}
        if measure:
            with torch.no_grad():
                stats["grad_norm"] = self._per_lane([p.grad for p in self.params])
            before = [p.detach().clone() for p in self.params]
        for o in self.optimizers:
            o.step()
        for s in self.schedulers:
            s.step()
        if self.frozen:
            self._restore()
        if measure:
            with torch.no_grad():
                stats["update_norm"] = self._per_lane([a - p.detach() for a, p in zip(before, self.params)])
        return stats

    def freeze(self, lane: int) -> None:
        """Stop stepping `lane` (it diverged): its rows are put back after every later step."""
        b, i = self._rows[lane]
        self.frozen[lane] = [p.detach()[i].clone() for p in self.buckets[b]]

    @torch.no_grad()
    def _restore(self) -> None:
        for lane, saved in self.frozen.items():
            b, i = self._rows[lane]
            for j, p in enumerate(self.buckets[b]):
                p[i] = saved[j]

    def lrs(self) -> list[float]:
        """Each lane's learning rate now (its bucket's)."""
        return [float(o.param_groups[0]["lr"]) for o, n in zip(self.optimizers, self.sizes) for _ in range(n)]

    def train(self) -> None:
        """Elementwise optimizers have no evaluation mode (schedule-free ones are not lanes)."""

    def eval(self) -> None:
        """As `train`."""

    def state_dict(self) -> dict:
        return {"optimizers": [o.state_dict() for o in self.optimizers],
                "schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: dict) -> None:
        for o, s in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)
        for o, s in zip(self.schedulers, state["schedulers"], strict=True):
            o.load_state_dict(s)
