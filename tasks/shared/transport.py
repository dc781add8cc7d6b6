"""Wasserstein-2 distance between two point clouds, exact, by optimal transport (POT).

The empirical W2 between n and m samples solves the discrete transport problem on squared
Euclidean costs with uniform weights (network simplex, `ot.emd2`). It costs about 0.14 s for
1,000 x 1,000 points and 1 s for 2,500 x 2,500 on one CPU core, so callers keep their sample
sizes near 1,000 and state them. The value between two samples of the same distribution is not
zero: it shrinks with the sample size, and callers report that noise floor beside it.
"""

from __future__ import annotations

import torch
from torch import Tensor


def w2(x: Tensor, y: Tensor) -> float:
    """W2 between the empirical measures of the rows of x (n, d) and y (m, d)."""
    import ot  # POT takes ~1 s to import: only runs that measure W2 pay it

    x, y = x.detach().to("cpu", torch.float64), y.detach().to("cpu", torch.float64)
    a = torch.full((len(x),), 1 / len(x), dtype=torch.float64)
    b = torch.full((len(y),), 1 / len(y), dtype=torch.float64)
    # numItermax: the default (1e5) stops short of the optimum beyond ~500 points
    cost = ot.emd2(a, b, ot.dist(x, y, metric="sqeuclidean"), numItermax=10**7)
    return float(cost) ** 0.5
