"""Sharpness: the top eigenvalue of the Hessian of the training loss, by power iteration on
Hessian-vector products (double backward), over the fixed batch the task provides."""

from __future__ import annotations

import torch
from torch import Tensor


def top_hessian_eigenvalue(loss: Tensor, params: list[Tensor], iters: int = 20, rtol: float = 1e-3) -> float:
    """Largest-magnitude eigenvalue of d^2 loss / d params^2 (for trained networks, the largest
    positive one, as in the edge-of-stability literature). Stops early when it moves by < rtol."""
    grads = torch.autograd.grad(loss, params, create_graph=True)
    v = [torch.randn_like(p) for p in params]
    eig = 0.0
    for _ in range(iters):
        norm = torch.sqrt(sum((x * x).sum() for x in v))
        v = [x / norm for x in v]
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        new = float(sum((h * x).sum() for h, x in zip(hv, v)))  # Rayleigh quotient v^T H v
        v = [h.detach() for h in hv]
        if abs(new - eig) <= rtol * abs(new):
            return new
        eig = new
    return eig
