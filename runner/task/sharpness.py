"""Sharpness: the top eigenvalue of the Hessian of the training loss, from Hessian-vector products
(double backward) over the batch the task provides (`task.sharpness_loss()`), two ways:

- `top_hessian_eigenvalue`: power iteration (`metrics.sharpness_iters` steps, default 20), the
  largest-magnitude eigenvalue; it converges at the ratio of the top two eigenvalues, so with a
  close second one 20 steps stop short of it (an underestimate);
- `lanczos_top_eigenvalue`: ARPACK's implicitly restarted Lanczos (scipy's `eigsh`, `which="LA"`),
  the largest algebraic eigenvalue to a relative tolerance; Krylov subspaces converge much
  faster than powers of H (README "Sharpness" has both costs, measured).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor


def hvp_fn(loss: Tensor, params: list[Tensor]) -> Callable[[list[Tensor]], list[Tensor]]:
    """v -> H v for v shaped like `params` (the graph of the gradient is kept for repeated calls)."""
    grads = torch.autograd.grad(loss, params, create_graph=True)
    return lambda v: [h.detach() for h in torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)]


def top_hessian_eigenvalue(loss: Tensor, params: list[Tensor], iters: int = 20, rtol: float = 1e-3) -> float:
    """Largest-magnitude eigenvalue of d^2 loss / d params^2 (for trained networks, the largest
    positive one, as in the edge-of-stability literature). Stops early when it moves by < rtol."""
    hvp = hvp_fn(loss, params)
    g = torch.Generator(device=params[0].device).manual_seed(0)  # its own: measuring leaves the run's RNGs alone
    v = [torch.randn(p.shape, generator=g, device=p.device, dtype=p.dtype) for p in params]
    eig = 0.0
    for _ in range(iters):
        norm = torch.sqrt(sum((x * x).sum() for x in v))
        v = [x / norm for x in v]
        hv = hvp(v)
        new = float(sum((h * x).sum() for h, x in zip(hv, v)))  # Rayleigh quotient v^T H v
        v = hv
        if abs(new - eig) <= rtol * abs(new):
            return new
        eig = new
    return eig


def lanczos_top_eigenvalue(loss: Tensor, params: list[Tensor], tol: float = 1e-4, maxiter: int = 100) -> float:
    """Largest (algebraic) eigenvalue of the Hessian by Lanczos, to relative accuracy `tol`.
    Its start vector comes from its own seeded generator: measuring leaves the run's RNGs alone."""
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    hvp = hvp_fn(loss, params)
    shapes, n = [p.shape for p in params], sum(p.numel() for p in params)
    ref = params[0]

    def matvec(u: np.ndarray) -> np.ndarray:
        flat = torch.as_tensor(np.ravel(u), dtype=ref.dtype, device=ref.device)
        hv = hvp([c.reshape(s) for c, s in zip(flat.split([s.numel() for s in shapes]), shapes)])
        return torch.cat([h.reshape(-1) for h in hv]).double().cpu().numpy()

    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(n)
    try:
        return float(eigsh(op, k=1, which="LA", tol=tol, maxiter=maxiter, v0=v0, return_eigenvectors=False)[0])
    except ArpackNoConvergence as e:  # not to `tol` within maxiter restarts: its best Ritz value, else NaN
        return float(e.eigenvalues[0]) if len(e.eigenvalues) else float("nan")
