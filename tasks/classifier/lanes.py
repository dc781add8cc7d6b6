"""The classifier as lanes: task.py's minibatch step for every lane at once, one network forward and
backward for all lanes (runner/task/lanes.py's LaneNetwork: the single run's module mapped over each
lane's parameters, BatchNorm statistics per lane).

Each lane starts where its single run starts (the runner builds and seeds each lane's own task: its
initial weights, its generator) and draws its batches with its own task (`next_indices`,
`crop_draws`: its permutation, crops and flips, in its single run's order), so it sees its single
run's data. The lanes of a group share the dataset (their configs are equal there): the batches are
gathered from the first lane's tensors. Each lane's loss is task.py's `loss` mapped over the lanes;
the gradient of their sum is each lane's own gradient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from runner.task.decay import decay_is_a_gradient_term
from runner.task.lanes import LaneModule, LaneNetwork, lane_norms


class ClassifierLanes:
    primary = "train/grad_norm"

    def __init__(self, tasks: Sequence[Any], sizes: Mapping[str, Sequence[int]], augment, step_record):
        first = self.first = tasks[0]
        self.tasks, self.rt, self.total_steps = tasks, first.rt, first.total_steps
        self.augment, self.step_record = augment, step_record  # task.py's own (passed in: task.py imports this module)
        self.net = LaneNetwork([t.net for t in tasks], sizes["model"])
        self._train_loss = torch.func.vmap(lambda logits, y: first.loss(logits, y, first.label_smoothing))
        self._eval_loss = torch.func.vmap(lambda logits, y: first.loss(logits, y, 0.0), in_dims=(0, None))
        self._coupled: dict[tuple[int, int], bool] = {}  # (bucket, rank) -> is its weight decay a gradient term

    def models(self) -> Mapping[str, LaneModule]:
        return {"model": self.net.weights}

    def _batch(self) -> tuple[Tensor, Tensor]:
        """(lanes, batch, ...) images and labels: each lane's draws, from its own task."""
        idx = [t.next_indices() for t in self.tasks]  # a lane's permutation is drawn before its crops
        crops = [t.crop_draws(len(i)) for t, i in zip(self.tasks, idx)] if self.first.augment else None
        at = torch.stack(idx)
        x, y = self.first.x_train[at], self.first.y_train[at]
        if crops is not None:  # per image: the lanes' batches as one batch of lanes x batch images
            offsets, flips = torch.cat([c[0] for c in crops], 1), torch.cat([c[1] for c in crops])
            x = self.augment(x.flatten(0, 1), self.first.pad, offsets, flips).reshape(x.shape)
        return x, y

    def train_step(self, opt: Mapping[str, Any], measure: bool) -> dict[str, Tensor]:
        o = opt["model"]
        x, y = self._batch()
        with self.rt.autocast():
            loss = self._train_loss(self.net(x), y)
        o.zero_grad()
        loss.sum().backward()  # each lane's gradient: the lanes' losses share no variable
        objective = self._objective_grad_norm(o) if measure else None  # before the step moves w
        stats = o.step(measure)
        return self.step_record(loss, stats, objective) if measure else {}

    def _is_coupled(self, b: int, opt: torch.optim.Optimizer, rank: int) -> bool:
        """Whether bucket b's weight decay is a gradient term for its tensors of `rank` (a lane's
        tensor, one dimension less than the stacked one): probed once, as task.py's coupled_decay."""
        if (b, rank) not in self._coupled:
            group = opt.param_groups[0]
            self._coupled[b, rank] = bool(group.get("weight_decay")) and decay_is_a_gradient_term(
                type(opt), group, rank)
        return self._coupled[b, rank]

    def _objective_grad_norm(self, o) -> Tensor | None:
        """Each lane's |grad L + wd w| over the tensors whose decay is a gradient term, |grad L|
        over the rest, as task.py's; None when no bucket's decay is a gradient term."""
        buckets = list(enumerate(zip(o.optimizers, o.buckets)))
        coupled = [[self._is_coupled(b, opt, p.ndim - 1) for p in bucket] for b, (opt, bucket) in buckets]
        if not any(map(any, coupled)):
            return None
        per_bucket = []
        with torch.no_grad():
            for (_b, (opt, bucket)), decays in zip(buckets, coupled):
                wd = opt.param_groups[0].get("weight_decay") or 0.0
                per_bucket.append(lane_norms([p.grad.add(p.detach(), alpha=wd) if c else p.grad
                                              for p, c in zip(bucket, decays)]))
        return torch.cat(per_bucket)

    @torch.no_grad()
    def evaluate(self) -> dict[str, Tensor]:
        self.net.eval()
        first, lanes = self.first, len(self.tasks)
        loss_sum = torch.zeros(lanes, device=self.rt.device, dtype=first.dtype)
        correct = torch.zeros(lanes, device=self.rt.device, dtype=torch.long)
        for i in range(0, len(first.y_test), first.eval_batch_size):
            x, y = first.x_test[i:i + first.eval_batch_size], first.y_test[i:i + first.eval_batch_size]
            with self.rt.autocast():
                logits = self.net(x, shared=True)
            loss_sum += self._eval_loss(logits.to(first.dtype), y) * len(y)
            correct += (logits.argmax(-1) == y).sum(-1)
        self.net.train()
        n = len(first.y_test)
        return {"eval/loss": loss_sum / n, "eval/acc": correct / n}

    def unstack(self) -> None:
        """Each lane's final weights and BatchNorm statistics into its own task."""
        self.net.write_back([t.net for t in self.tasks])
