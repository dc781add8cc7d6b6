"""The minimiser of a smooth strongly convex objective to float64 precision, solved once and cached.

Newton's method in numpy float64 (the Hessian is small: one row and column per feature), run
until the gradient's norm is below `tol` or stops falling; the result, with the eigenvalues of the
Hessian at x*, is kept in `<cache>/<key digest>.npz`, keyed by everything the answer depends on
(problem, its parameters, a digest of its data), so a second run reads it in a millisecond.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

GradHess = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
SOLVER_VERSION = 1  # bump when the solve changes: old cache entries are then ignored


def newton(grad_hess: GradHess, x0: np.ndarray, tol: float = 1e-14, max_iter: int = 100) -> np.ndarray:
    """x with |grad f(x)| <= tol, or the best x once a Newton step no longer lowers the gradient
    (float64's floor: a well-conditioned problem stops near 1e-16 x its scale)."""
    x, best, best_norm = x0.astype(np.float64), x0, np.inf
    for _ in range(max_iter):
        g, h = grad_hess(x)
        norm = float(np.linalg.norm(g))
        if norm < best_norm:
            best, best_norm = x, norm
        elif norm >= best_norm and best_norm < 1e-10:
            break  # at the rounding floor: further steps only move x within it
        if norm <= tol:
            break
        x = x - np.linalg.solve(h, g)
    return best


def digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def cached(cache_dir: str | Path, key: Mapping[str, Any], compute: Callable[[], dict[str, np.ndarray]]
           ) -> dict[str, np.ndarray]:
    """`compute()`'s arrays, read from the cache when `key` was solved before; a cache that cannot
    be written (read-only home) costs the solve each time, nothing else."""
    text = json.dumps({**key, "solver": SOLVER_VERSION}, sort_keys=True)
    path = Path(cache_dir).expanduser() / f"{hashlib.sha256(text.encode()).hexdigest()[:24]}.npz"
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError):
        pass
    out = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, **out)
        os.replace(tmp, path)  # whole or absent: a concurrent job never reads half a file
    except OSError:
        pass
    return out
