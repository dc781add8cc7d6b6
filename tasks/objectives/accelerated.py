"""Nesterov's accelerated gradient for convex (not strongly convex) problems, momentum (k-1)/(k+2).

    y_k = x_k + (k - 1)/(k + 2) (x_k - x_{k-1}),   x_{k+1} = y_k - lr grad f(y_k)

f(x_k) - f* <= 2 L |x_0 - x*|^2 / (k + 1)^2 at lr = 1/L (Nesterov 1983; Beck & Teboulle 2009, with
this momentum as in Su, Boyd & Candes 2016). The parameters hold y_k, where the gradient is taken
(torch's SGD with nesterov=true keeps a constant momentum, which gives O(1/t^2) at no horizon).
`weight_decay` is a gradient term (coupled, as SGD's): the method then minimises f + wd/2 |x|^2.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class NesterovConvex(torch.optim.Optimizer):
    def __init__(self, params: Iterable, lr: float = 0.1, weight_decay: float = 0.0):
        if lr <= 0:
            raise ValueError(f"lr={lr}: must be > 0")
        if weight_decay < 0:
            raise ValueError(f"weight_decay={weight_decay}: must be >= 0")
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            for y in group["params"]:
                if y.grad is None:
                    continue
                state = self.state[y]
                if not state:
                    state["k"], state["x"] = 0, y.detach().clone()  # x_0 = y_0: no momentum at the start
                state["k"] += 1
                k, x_prev = state["k"], state["x"]
                grad = y.grad if not group["weight_decay"] else y.grad + group["weight_decay"] * y  # coupled: of f + wd/2 |x|^2
                x_next = y - group["lr"] * grad  # x_k, from the gradient at y_{k-1}
                y.copy_(x_next + (k - 1) / (k + 2) * (x_next - x_prev))  # y_k
                x_prev.copy_(x_next)
        return loss
