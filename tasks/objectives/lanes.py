"""The objective task as lanes: the same step as task.py's, for every lane at once.

Each lane's iterate starts where its single run starts (the runner builds and seeds each lane's own
task); the lanes of a group share the problem (its config is equal across them), so f, its
gradient and the measurements are the problem's own functions mapped over the lanes' rows
(torch.func.vmap), and the gradient of the sum of the lanes' losses is each lane's own gradient.
Stochastic gradients draw from each lane's own task's generator, in its single run's order: its
minibatch rows (`task.batch_size`, the same count in every lane: it is a shape) before the step's
loss, its noise (`task.noise`, lane-safe: one value per lane) once the gradient is taken, variable
by variable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from runner.task.lanes import LaneModule, lane_norms
from runner.task.rng import randn


class ObjectiveLanes:
    primary = "obj/subopt"

    def __init__(self, tasks: Sequence[Any], sizes: Mapping[str, Sequence[int]]):
        self.tasks, self.problem = tasks, tasks[0].problem
        self.iterate = LaneModule([t.xs for t in tasks], sizes["model"])
        self.total_steps, self.step_count = tasks[0].total_steps, tasks[0].step_count  # 0, or a checkpoint's
        self.regret = torch.stack([t.regret for t in tasks])
        self.exact = tasks[0].batch_size is None and not self.problem.online  # as task.py's `exact`

    def models(self) -> Mapping[str, LaneModule]:
        return {"model": self.iterate}

    def _mapped(self, fn, *args, rows: Tensor | None = None) -> Tensor:
        """fn(xs, *args) of one lane (fn(xs, *args, rows) with its rows), for every lane: one value per lane."""
        if rows is None:
            return torch.func.vmap(lambda *xs: fn(list(xs), *args))(*self.iterate.values())
        return torch.func.vmap(lambda r, *xs: fn(list(xs), *args, r))(rows, *self.iterate.values())

    def _rows(self) -> Tensor | None:
        """Each lane's minibatch rows, drawn by its own task: (lanes, batch_size)."""
        return None if self.tasks[0].batch_size is None else torch.stack([t._rows() for t in self.tasks])

    def train_step(self, opt: Mapping[str, Any], measure: bool) -> dict[str, Tensor]:
        o, p = opt["model"], self.problem
        self.step_count += 1
        loss = self._mapped(p.loss, self.step_count, rows=self._rows())
        out = {}
        if measure:
            with torch.no_grad():
                out = {"obj/subopt": self._mapped(p.subopt), "train/loss": loss.detach()}
                if p.distance(self.tasks[0].xs) is not None:
                    out["obj/dist"] = self._mapped(p.distance)
            if not self.exact:  # the step's loss is not the objective: its gradient taken apart, as task.py does
                whole = torch.autograd.grad(self._mapped(p.value).sum(), list(self.iterate.parameters()))
                out["obj/grad_norm"] = lane_norms(self.iterate.joined(whole))
        if p.online:
            with torch.no_grad():
                self.regret += loss.detach() - p.loss([p.x_star], self.step_count)
        o.zero_grad()
        loss.sum().backward()  # each lane's gradient: the lanes' losses do not share a variable
        if measure and self.exact:
            out["obj/grad_norm"] = lane_norms(self.iterate.grads())
        with torch.no_grad():
            for i, t in enumerate(self.tasks):
                if t.noise:
                    for g in self.iterate.lane_grads(i):
                        g.add_(randn(t.gen, g.shape, g), alpha=t.noise)
        stats = o.step(measure)
        with torch.no_grad():
            for bucket in self.iterate.buckets():
                p.project(bucket)  # elementwise (Reddi's box): the same on a bucket's rows
        if not measure:
            return {}
        out |= {"train/grad_norm": stats["grad_norm"], "train/update_norm": stats["update_norm"]}
        if p.online:
            out["obj/regret_avg"] = self.regret / self.step_count
        return out

    def evaluate(self) -> dict[str, Tensor]:
        return {}

    def unstack(self) -> None:
        """Each lane's iterate, step count and regret into its own task (at the end, and for a checkpoint)."""
        with torch.no_grad():
            for i, t in enumerate(self.tasks):
                for x, v in zip(t.xs, self.iterate.lane(i)):
                    x.copy_(v)
                t.step_count, t.regret = self.step_count, self.regret[i].clone()
