"""The gridworld task as lanes: task.py's exact PG, NPG and REINFORCE steps for every lane at once.

Each lane starts where its single run starts (the runner builds and seeds each lane's own task: its
logits, its V*, its episode generator and environment). The lanes of a group share the MDP's
transitions, rewards and start distribution (their configs are equal there); `gamma` and `tau` may
differ, so the exact evaluation is task.py's own `evaluate_policy` mapped over the lanes' logits,
discounts and temperatures (torch.func.vmap), one batched LU per step for all lanes. REINFORCE
draws each lane's episodes with that lane's own task (its generator and environment, in the single
run's order), so its draws are its single run's; only the optimizer step is batched there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from runner.task.lanes import LaneModule


class PolicyLanes:
    primary = "rl/subopt"

    def __init__(self, tasks: Sequence[Any], sizes: Mapping[str, Sequence[int]], evaluate_policy: Callable):
        first = tasks[0]
        self.evaluate_policy = evaluate_policy  # task.py's own (passed in: task.py imports this module)
        self.tasks, self.method, self.mdp = tasks, first.method, first.mdp
        self.total_steps = first.total_steps
        self.policy = LaneModule([list(t.policy.parameters()) for t in tasks], sizes["policy"])
        dev, f64 = first.mdp.P.device, torch.float64
        self.v_star = torch.stack([t.v_star for t in tasks])
        self.tau = torch.tensor([float(t.tau) for t in tasks], dtype=f64, device=dev)
        self.gamma = torch.tensor([float(t.mdp.gamma) for t in tasks], dtype=f64, device=dev)
        self._exact = torch.func.vmap(self._one_lane)

    def models(self) -> Mapping[str, LaneModule]:
        return {"policy": self.policy}

    def _one_lane(self, logits: Tensor, v_star: Tensor, tau: Tensor, gamma: Tensor) -> tuple[Tensor, ...]:
        """One lane's exact step quantities, as task.py's train_step forms them."""
        m = dataclasses.replace(self.mdp, gamma=gamma)
        ev = self.evaluate_policy(m, logits, tau)
        grad = ev.d[:, None] * ev.pi * ev.adv / (1 - gamma)  # ascent direction of V_tau(rho)
        gap = (v_star - ev.V).clamp_min(0)
        return (grad, ev.adv / (1 - gamma), torch.linalg.vector_norm(grad), m.rho @ gap, gap.max(),
                m.rho @ ev.V_plain, ev.d @ ev.entropy / ev.d.sum())

    def _set_grad(self, grad: Tensor) -> None:
        """`grad` (lanes, S, A) into the bucket parameters of the logits."""
        (stack,) = self.policy.stacks
        for part, g in zip(stack.parts, grad.split(self.policy.sizes)):
            part.grad = g.contiguous()

    def train_step(self, opt: Mapping[str, Any], measure: bool) -> dict[str, Tensor]:
        o = opt["policy"]
        (logits,) = self.policy.values()
        o.zero_grad()
        out: dict[str, Tensor] = {}
        if self.method == "reinforce":
            losses, returns = zip(*(t._reinforce_loss(logits[i]) for i, t in enumerate(self.tasks)))
            torch.stack(losses).sum().backward()  # each lane's estimate: the lanes share no variable
            exact = self._exact(logits.detach(), self.v_star, self.tau, self.gamma) if measure else None
            stats = o.step(measure)
            if measure:
                out = {"rl/episode_return": torch.tensor(returns, dtype=torch.float64),
                       "train/grad_norm": stats["grad_norm"]}
        else:
            exact = self._exact(logits.detach(), self.v_star, self.tau, self.gamma)
            grad, natural, grad_norm = exact[:3]
            self._set_grad(-natural if self.method == "npg" else -grad)  # optimizers descend: negate
            stats = o.step(measure)
            out = {"train/grad_norm": grad_norm}  # the plain gradient, also for npg
        if not measure:
            return {}
        subopt, subopt_inf, ret, entropy = exact[3:]
        return {**out, "rl/subopt": subopt, "rl/subopt_inf": subopt_inf, "rl/return": ret,
                "rl/entropy": entropy, "train/update_norm": stats["update_norm"]}

    def evaluate(self) -> dict[str, Tensor]:
        return {}

    def unstack(self) -> None:
        """Each lane's final logits into its own task (its policy picture, its convergence)."""
        with torch.no_grad():
            for i, t in enumerate(self.tasks):
                for x, v in zip(t.policy.parameters(), self.policy.lane(i)):
                    x.copy_(v)
