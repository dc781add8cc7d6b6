"""An optimizer set: the torch optimizers that together own every trainable parameter of a model.

Most configs build one optimizer over all parameters. A config with an `aux` node (Muon) is a
*matrix* optimizer: the hidden weight matrices and convolution filters go to it, the first
layer, the classifier head, biases and norms to the auxiliary one. `torch.optim.Muon` accepts
2-D tensors only, so each filter is handed to it as a 2-D view that shares its storage
(out_channels x in*kh*kw); its gradient is re-viewed the same way before every step, and the
update lands in the filter in place.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

OptimizerFactory = Callable[[list], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], "torch.optim.lr_scheduler.LRScheduler | None"]


def split_hidden_matrices(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(hidden matrices, rest): every trainable tensor of 2 or more dimensions except the first
    and the last one in registration order (input layer and classifier head); a module with no
    input layer or head (an objective's iterate) names its matrices itself (`matrices()`)."""
    params = [p for p in model.parameters() if p.requires_grad]
    weights, own = [p for p in params if p.ndim >= 2], getattr(model, "matrices", None)
    hidden = {id(p) for p in (own() if callable(own) else weights[1:-1])}
    return [p for p in params if id(p) in hidden], [p for p in params if id(p) not in hidden]


def _matrix_order(p: Tensor) -> tuple[int, ...]:
    """A dimension order in which `p` is contiguous, output channels first."""
    if p.ndim == 2 or p.is_contiguous():
        return tuple(range(p.ndim))
    if p.ndim == 4 and p.is_contiguous(memory_format=torch.channels_last):
        return (0, 2, 3, 1)
    raise ValueError(f"cannot view a tensor of shape {tuple(p.shape)} and strides {p.stride()} as a matrix")


class _MatrixView:
    """A 2-D parameter sharing storage with an N-D one, for optimizers that take matrices only."""

    def __init__(self, param: nn.Parameter):
        self.param = param
        self.order = _matrix_order(param)
        self.view = nn.Parameter(param.detach().permute(self.order).view(param.shape[0], -1))
        assert self.view.data_ptr() == param.data_ptr()

    def pass_grad(self) -> None:
        g = self.param.grad
        self.view.grad = None if g is None else g.permute(self.order).reshape(self.view.shape)


class OptimizerSet:
    """Steps, schedules and checkpoints one or two optimizers as one."""

    def __init__(
        self,
        model: nn.Module,
        factory: OptimizerFactory,
        aux_factory: OptimizerFactory | None = None,
        create_graph: bool = False,
    ):
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.create_graph = create_graph  # backward must keep the graph (Hessian-vector products)
        if create_graph:
            # torch warns of a parameter<->gradient reference cycle; zero_grad(set_to_none=True)
            # before every backward breaks it, as the warning itself advises.
            warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")
        self.views: list[_MatrixView] = []
        if aux_factory is None:
            self.optimizers = [factory(self.params)]
            self.split = {"all": _count(self.params)}
        else:
            hidden, rest = split_hidden_matrices(model)
            self.views = [_MatrixView(p) for p in hidden if p.ndim > 2]
            viewed = {id(v.param): v.view for v in self.views}
            matrices = [viewed.get(id(p), p) for p in hidden]
            self.optimizers = [o for o in (factory(matrices) if matrices else None,
                                           aux_factory(rest) if rest else None) if o is not None]
            self.split = {"matrix": _count(hidden), "aux": _count(rest)}
        self.schedulers: list[torch.optim.lr_scheduler.LRScheduler] = []
        self._before: list[Tensor] | None = None

    def schedule(self, factory: SchedulerFactory) -> None:
        self.schedulers = [s for s in map(factory, self.optimizers) if s is not None]

    def zero_grad(self) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=True)

    def step(self, measure: bool = False) -> dict[str, Tensor]:
        """Apply one update. With `measure`, also return the gradient norm (read before the
        step: some optimizers overwrite `.grad`) and the norm of the update, on the device."""
        stats: dict[str, Tensor] = {}
        if measure:
            with torch.no_grad():  # with create_graph the gradients carry a graph; the norm must not
                stats["grad_norm"] = total_norm([p.grad for p in self.params if p.grad is not None])
            if self._before is None:  # one buffer for the whole run: no allocation per measurement
                self._before = [torch.empty_like(p, requires_grad=False) for p in self.params]
            torch._foreach_copy_(self._before, [p.detach() for p in self.params])
        for v in self.views:
            v.pass_grad()
        for o in self.optimizers:
            o.step()
        for s in self.schedulers:
            s.step()
        if measure:
            torch._foreach_sub_(self._before, [p.detach() for p in self.params])  # = -(update)
            stats["update_norm"] = total_norm(self._before)
        return stats

    @property
    def lr(self) -> float:
        return float(self.optimizers[0].param_groups[0]["lr"])

    def train(self) -> None:
        """Back to training mode after an evaluation (schedule-free optimizers keep two iterates)."""
        for o in self.optimizers:
            if callable(getattr(o, "train", None)):
                o.train()

    def eval(self) -> None:
        for o in self.optimizers:
            if callable(getattr(o, "eval", None)):
                o.eval()

    def state_dict(self) -> dict:
        return {"optimizers": [o.state_dict() for o in self.optimizers],
                "schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: dict) -> None:
        for o, s in zip(self.optimizers, state["optimizers"], strict=True):
            o.load_state_dict(s)
        for o, s in zip(self.schedulers, state["schedulers"], strict=True):
            o.load_state_dict(s)

    def describe(self) -> str:
        """e.g. 'Muon on hidden matrices: 6 tensors / 1,967,616 params; AdamW on the rest: ...'."""
        where = {"all": "all parameters", "matrix": "hidden matrices", "aux": "first layer, head, biases, norms"}
        names = [type(o).__name__ for o in self.optimizers]
        sides = [side for side, (n, _) in self.split.items() if n]
        return "; ".join(f"{name} on {where[side]}: {self.split[side][0]} tensors / {self.split[side][1]:,} params"
                         for name, side in zip(names, sides))


def total_norm(tensors: Sequence[Tensor]) -> Tensor:
    """Euclidean norm of all tensors together, on their device (one fused kernel per list;
    torch.nn.utils.get_total_norm does the same with per-call grouping that costs ~15 us more)."""
    if len(tensors) == 1:  # one kernel instead of three (a game's point player, a single weight)
        return torch.linalg.vector_norm(tensors[0])
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(tensors))))


def _count(params: Sequence[Tensor]) -> tuple[int, int]:
    return len(params), sum(p.numel() for p in params)
