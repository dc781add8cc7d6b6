"""Which weight decays are gradient terms, for the primary gradient norm of a task (tasks/classifier/task.py).

Weight decay is one of two things:
- a gradient term (coupled: SGD, Adam, NAdam, RAdam, RMSprop, Adagrad, ADOPT, Lion with
  `weight_decouple=false`, ...): the optimizer minimises L + wd/2 |w|^2, whose fixed points have
  grad L + wd w = 0 for any positive preconditioner, so the primary is |grad L + wd w| over the
  tensors decayed (per param group; a group without decay contributes |grad L|).
- a shrink of the weights outside the gradient (decoupled: AdamW, Muon, Lion, AdamP, SOAP,
  Schedule-Free AdamW, Kron, Prodigy, AdaHessian by default): w <- w - lr (D(g) + wd w) with the
  method's direction D. No objective has these fixed points in general (D(g) = -wd w). For the
  normalised directions of this set (Adam's m / (sqrt(v) + eps), Lion's sign, Muon's
  orthogonalisation) they are the KKT points of min L subject to |w|_inf <= 1/wd (Xie & Li 2024,
  "Implicit bias of AdamW"; Chen et al. 2024, "Lion secretly solves constrained optimization";
  the spectral norm for Muon): inside that ball, where weights of a trained net are
  (|w_i| << 1/wd), grad L = 0 (AdamW at rest: |g_i| = wd eps |w_i| / (1 - wd |w_i|)), while
  |grad L + wd w| = wd |w| is not. So the primary is the loss gradient. Not covered: AdaHessian
  with decoupled decay rests at grad L = -wd (|h| + eps) w (its Hessian scaling), where neither
  norm is zero; `train/update_norm` / lr is every method's fixed-point residual.
Which one a group's decay is, is not read from a table of classes and flags but measured once per
optimizer and tensor rank (`decay_is_a_gradient_term`): with decay wd on L, does the optimizer
step exactly as it does without decay on L + wd/2 |w|^2?
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from runner.task.optim import OptimizerSet

log = logging.getLogger(__name__)


def coupled_decay(opt: OptimizerSet) -> list[tuple[dict, list[Tensor]]]:
    """(param group, the model's tensors in it) for every group with a weight decay that is a
    gradient term for those tensors (a group may decay some ranks only: Kron, matrices only).
    Muon's 2-D views of conv filters stand for the filters (same values, permuted)."""
    model_tensor = {id(v.view): v.param for v in opt.views}
    found = []
    for o in opt.optimizers:
        for group in o.param_groups:
            if not group.get("weight_decay"):
                continue
            ranks = {p.ndim for p in group["params"]}
            coupled = {r for r in ranks if decay_is_a_gradient_term(type(o), group, r, opt.create_graph)}
            params = [model_tensor.get(id(p), p) for p in group["params"] if p.ndim in coupled]
            if params:
                found.append((group, params))
    return found


def decay_is_a_gradient_term(cls: type, group: Mapping, ndim: int, create_graph: bool = False) -> bool:
    """Whether optimizer `cls` with `group`'s settings, stepping a loss L with the group's weight
    decay wd, moves a tensor of rank `ndim` exactly as it does without decay on L + wd/2 |w|^2.
    Three steps from the same random state on a float64 quadratic with an uneven Hessian (so
    that a preconditioner, AdaHessian's included, is not the identity); the L2 term's gradient is
    wd w and its Hessian, as a coupled decay sees it, zero. The RNGs are left as they were (Kron
    draws from numpy and torch)."""
    shape = (3,) + (2,) * (ndim - 1) if ndim else ()
    n = math.prod(shape)
    w0 = (torch.linspace(0.5, 1.5, n, dtype=torch.float64) * (-1.0) ** torch.arange(n)).reshape(shape)
    curvature = torch.linspace(0.5, 4.0, n, dtype=torch.float64).reshape(shape)
    wd = float(group["weight_decay"])
    rngs = torch.get_rng_state(), np.random.get_state(), random.getstate()
    ends = []
    try:
        for decay_in_loss in (False, True):
            torch.set_rng_state(rngs[0])
            np.random.set_state(rngs[1])
            random.setstate(rngs[2])
            w = nn.Parameter(w0.clone())
            o = cls([w], lr=group["lr"])
            o.param_groups[0].update({k: v for k, v in group.items() if k != "params"},
                                     weight_decay=0.0 if decay_in_loss else wd)
            for switch in ("fused", "capturable", "foreach"):  # kernels for the real tensors' device, not the maths
                if switch in o.param_groups[0]:
                    o.param_groups[0][switch] = None if switch == "foreach" else False
            for _ in range(3):  # some optimizers only fill their state on the first step (ADOPT, SOAP)
                o.zero_grad(set_to_none=True)
                loss = 0.5 * (curvature * (w - w0) ** 2).sum()
                if decay_in_loss:
                    loss = loss + wd * (w.detach() * w).sum()
                loss.backward(create_graph=create_graph)
                o.step()
            ends.append(w.detach())
    except Exception as e:  # noqa: BLE001 - an optimizer that cannot step a probe: assume decoupled
        log.warning("weight decay of %s not probed (%s: %s): train/grad_norm is the loss gradient's",
                    cls.__name__, type(e).__name__, e)
        return False
    finally:
        torch.set_rng_state(rngs[0])
        np.random.set_state(rngs[1])
        random.setstate(rngs[2])
    moved = max(float((e - w0).abs().max()) for e in ends)
    return moved > 0 and float((ends[0] - ends[1]).abs().max()) <= 1e-6 * moved
