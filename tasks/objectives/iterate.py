"""The iterate x_t of an objective task: the problem's variables as float64 parameters.

`matrices()` names the parameters a matrix optimizer (Muon) takes: every 2-D variable of the
problem (a factorisation's U and V), since here no matrix is an input layer or a classifier head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Iterate(nn.Module):
    def __init__(self, shapes: Sequence[Sequence[int]]):
        super().__init__()
        self.xs = nn.ParameterList([nn.Parameter(torch.zeros(*s, dtype=torch.float64)) for s in shapes])

    def matrices(self) -> list[nn.Parameter]:
        return [p for p in self.xs if p.ndim == 2]
