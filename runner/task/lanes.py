"""What a task needs to run a group of jobs as lanes of one batched computation (README "Lanes").

A task class that supports lanes declares `lane_safe` (its config keys that may differ between the
lanes of a group: numbers that change neither shapes nor control flow), `lane_refusal(root)` (why a
config cannot run as a lane, or None) and `lanes(tasks, sizes)`, which builds the batched task from
the lanes' own single-run tasks (built and seeded one by one by the runner, so each lane starts
where its single run starts). The batched task meets the protocol of runner/task/protocol.py,
except that its metrics are tensors with one value per lane (or plain floats shared by all), and
that its optional measurements after training, `assess(ended)`, yield one list per record: each
lane's record (None for the lanes in `ended`, which stopped), made and kept by the lane's own task
(diffusion: the sampler at every step count, all lanes' samples in one batch). A batched task may
define `lane_ended(i)`, called when lane i diverges (it is frozen from then on): the GAN's stops
measuring it and keeping its snapshots.

Its variables are `LaneModule`s: each variable of every lane stacked as rows, one parameter per
*bucket* of lanes that share optimizer hyperparameters (one optimizer each, so a learning rate never
applies to another lane's rows). Gradients of the sum of the lanes' losses never mix lanes.

A network trained in every lane (a classifier's, a GAN's players) is a `LaneNetwork`: its lanes'
parameters in a LaneModule, its forward pass the single run's module called on each lane's rows
(torch.func.functional_call under torch.func.vmap), one batched computation for all lanes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap


class LaneStack(nn.Module):
    """One variable of every lane: rows are lanes, split into one parameter per bucket."""

    def __init__(self, values: Sequence[Tensor], sizes: Sequence[int]):
        super().__init__()
        rows = torch.stack([v.detach() for v in values])
        self.parts = nn.ParameterList([nn.Parameter(c.clone()) for c in rows.split(list(sizes))])

    def value(self) -> Tensor:
        """All lanes' rows, differentiable into the bucket parameters."""
        return self.parts[0] if len(self.parts) == 1 else torch.cat(list(self.parts))

    def grad(self) -> Tensor:
        return torch.cat([p.grad for p in self.parts])


class LaneModule(nn.Module):
    """A role's variables across lanes (`per_lane[i]`: lane i's tensors, in the single run's order)."""

    def __init__(self, per_lane: Sequence[Sequence[Tensor]], sizes: Sequence[int]):
        super().__init__()
        self.sizes = list(sizes)
        self.stacks = nn.ModuleList([LaneStack([lane[j] for lane in per_lane], sizes)
                                     for j in range(len(per_lane[0]))])

    def values(self) -> list[Tensor]:
        return [s.value() for s in self.stacks]

    def grads(self) -> list[Tensor]:
        return [s.grad() for s in self.stacks]

    def joined(self, per_param: Sequence[Tensor]) -> list[Tensor]:
        """Tensors laid out as `parameters()` (variable by variable, bucket by bucket), joined into
        one (lanes, ...) tensor per variable: e.g. `torch.autograd.grad(..., module.parameters())`."""
        k, out = 0, []
        for s in self.stacks:
            out.append(torch.cat(list(per_param[k:k + len(s.parts)])))
            k += len(s.parts)
        return out

    def buckets(self) -> list[list[nn.Parameter]]:
        """Each bucket's parameters, for the optimizer of that bucket."""
        return [[s.parts[b] for s in self.stacks] for b in range(len(self.sizes))]

    def lane_grads(self, i: int) -> list[Tensor]:
        """Lane i's gradient rows, views into its bucket's `.grad` (a lane's own noise added in place)."""
        b = next(b for b in range(len(self.sizes)) if i < sum(self.sizes[:b + 1]))
        return [s.parts[b].grad[i - sum(self.sizes[:b])] for s in self.stacks]

    def lane(self, i: int) -> list[Tensor]:
        """Lane i's current values (detached), to write back into its single-run task."""
        return [s.value()[i].detach() for s in self.stacks]


def lane_norms(tensors: Sequence[Tensor]) -> Tensor:
    """The Euclidean norm of each lane's part of `tensors` (rows = lanes) together: one value per lane."""
    per = torch.stack([torch.linalg.vector_norm(t.reshape(len(t), -1), dim=1) for t in tensors])
    return per[0] if len(per) == 1 else torch.linalg.vector_norm(per, dim=0)


class LaneNetwork(nn.Module):
    """Every lane's copy of one network (one architecture: a group's configs are equal there) as one
    batched function. `forward(x)` takes one input per lane (lanes, ...), or with `shared=True` one
    input for all; it returns (lanes, ...). The parameters are a LaneModule's (`weights`), so each
    bucket keeps its own optimizer. Buffers (BatchNorm's running statistics) are stacked per lane
    too, one (lanes, ...) tensor each: the forward pass updates each lane's rows in place under vmap,
    as the single run's module updates its own."""

    def __init__(self, nets: Sequence[nn.Module], sizes: Sequence[int]):
        super().__init__()
        self.names = [name for name, _ in nets[0].named_parameters()]
        self.weights = LaneModule([list(n.parameters()) for n in nets], sizes)
        self.lane_buffers = {name: torch.stack([dict(n.named_buffers())[name] for n in nets])
                         for name, _ in nets[0].named_buffers()}
        self._net = (nets[0],)  # in a tuple, not a submodule: only its structure is called

    def _one(self, params: Sequence[Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self._net[0], {**dict(zip(self.names, params)), **buffers}, (x,))

    def forward(self, x: Tensor, shared: bool = False) -> Tensor:
        return vmap(self._one, in_dims=(0, 0, None if shared else 0))(self.weights.values(), self.lane_buffers, x)

    def train(self, mode: bool = True) -> LaneNetwork:
        self._net[0].train(mode)
        return super().train(mode)

    @torch.no_grad()
    def write_back(self, nets: Sequence[nn.Module]) -> None:
        """Each lane's current parameters and buffers into its own network (lane i into `nets[i]`)."""
        for i, net in enumerate(nets):
            for p, v in zip(net.parameters(), self.weights.lane(i), strict=True):
                p.copy_(v)
            for name, b in net.named_buffers():
                b.copy_(self.lane_buffers[name][i])
