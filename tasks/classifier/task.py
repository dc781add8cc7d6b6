"""Image classification by minibatch (or full-batch) gradient methods: digits, MNIST, CIFAR.

    runner task=digits                 # the default experiment, offline
    runner task=cifar optim=muon       # CIFAR-10, fastnet, Muon

The whole dataset lives on the device as one tensor; every step draws the next slice of a
per-epoch random permutation, augments it on the device (CIFAR: random crop with padding and
horizontal flip, in batch) and takes one optimizer step. The permutations, crops and flips come
from the run's own generator (runner/task/rng.py), so a lane draws what its single run draws.

Primary convergence metric: `train/grad_norm`, the norm of the gradient of the objective the
optimizer actually minimises, measured before the step (`train/loss_grad_norm` is that of the
loss alone; without weight decay the two are one value). A weight decay that is a gradient term
(SGD's, Adam's) is part of that objective; a decoupled one (AdamW's) is not (runner/task/decay.py).

Loss (`task.loss`): `cross_entropy`, or `mse` on one-hot targets as in Cohen et al.'s (2021)
edge-of-stability experiments, 0.5 x the mean over samples of the squared error summed over
classes. Label smoothing smooths the targets of either; `eval/loss` is the same loss unsmoothed.
With `precision=fp64` the data, the model and every loss are float64 (`Runtime.param_dtype`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from runner.task.decay import coupled_decay
from runner.task.device import Runtime
from runner.task.optim import OptimizerSet, total_norm
from runner.task.rng import stream
from tasks.classifier.datasets import ImageData

LOSSES = ("cross_entropy", "mse")
SHARPNESS_MIN_BATCH = 512  # a sharpness measured on fewer examples varies from batch to batch


class Classifier:
    primary = "train/grad_norm"
    fp64 = True

    def __init__(
        self,
        dataset: Callable[..., ImageData],
        runtime: Runtime,
        model: Callable[..., nn.Module],
        batch_size: int = 128,
        epochs: float | None = None,
        steps: int | None = None,
        label_smoothing: float = 0.0,
        loss: str = "cross_entropy",
        augment: bool = False,
        crop_padding: int = 4,
        eval_batch_size: int = 2000,
        sharpness_batch: int | None = None,
    ):
        self.rt = runtime
        data = dataset()
        dev, self.dtype = runtime.device, runtime.param_dtype
        # Standardise with the training set's per-channel statistics, once, on the device.
        mean = data.x_train.mean(dim=(0, 2, 3), keepdim=True)
        std = data.x_train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
        self.fmt = fmt = torch.channels_last if runtime.channels_last else torch.contiguous_format
        self.x_train = ((data.x_train - mean) / std).to(dev, self.dtype).contiguous(memory_format=fmt)
        self.y_train = data.y_train.to(dev)
        self.x_test = ((data.x_test - mean) / std).to(dev, self.dtype).contiguous(memory_format=fmt)
        self.y_test = data.y_test.to(dev)
        self.n = len(self.y_train)
        self.batch_size = min(batch_size, self.n)
        self.steps_per_epoch = self.n // self.batch_size  # the last partial batch is dropped
        self.total_steps = int(steps) if steps is not None else max(1, round(epochs * self.steps_per_epoch))
        self.label_smoothing, self.loss_kind = label_smoothing, loss
        self.augment = augment
        self.pad = crop_padding
        self.eval_batch_size = eval_batch_size

        self.net = runtime.place(model(in_shape=tuple(self.x_train.shape[1:]), num_classes=data.num_classes))
        self.forward = runtime.forward_fn(self.net)
        # null: the larger of the run's batch and SHARPNESS_MIN_BATCH, so a full-batch run measures the
        # sharpness of the very loss it descends (a 512 subset overstated it, README "Sharpness")
        size = sharpness_batch or max(self.batch_size, SHARPNESS_MIN_BATCH)
        self.sharp_x, self.sharp_y = self.x_train[:size], self.y_train[:size]
        self._order = torch.empty(0, dtype=torch.long, device=dev)
        self._pos = 0
        self.gen = stream("classifier/data", dev)  # batch order, crops, flips
        self._decay: tuple[OptimizerSet, list[tuple[dict, list[Tensor]]]] | None = None  # found once

    lane_safe = ()  # every task key changes the data, the shapes or the loss: lanes differ in seed, optim, sched

    @staticmethod
    def lane_refusal(root: DictConfig) -> str | None:
        """Every model and setting runs as lanes (tasks/classifier/lanes.py; BatchNorm's statistics per lane)."""
        return None

    @staticmethod
    def lanes(tasks: list[Classifier], sizes: Mapping[str, list[int]]):
        from tasks.classifier.lanes import ClassifierLanes

        return ClassifierLanes(tasks, sizes, augment, step_record)

    @staticmethod
    def check(root: DictConfig) -> list[str]:
        """Problems with this task's config that can be seen before loading anything. Each key's
        type and range are declared in conf/task/*.yaml and checked before this runs."""
        cfg, problems = root.task, []
        if (cfg.get("epochs") is None) == (cfg.get("steps") is None):
            problems.append(f"task.epochs={cfg.get('epochs')}, task.steps={cfg.get('steps')}: set exactly one budget")
        if cfg.get("loss", "cross_entropy") not in LOSSES:
            problems.append(f"task.loss={cfg.get('loss')!r}: allowed: {', '.join(LOSSES)}")
        size = getattr(_target(cfg.dataset), "train_size", None)
        if size is not None and cfg.batch_size > size:
            problems.append(f"task.batch_size={cfg.batch_size}: larger than the training set ({size}); "
                            f"use at most {size} (= full-batch gradient descent)")
        return problems

    def models(self) -> Mapping[str, nn.Module]:
        return {"model": self.net}

    def state_dict(self) -> dict:
        """For checkpoints: where the run is in the current epoch's permutation, and its generator."""
        return {"order": self._order, "pos": self._pos, "gen": self.gen.get_state()}

    def load_state_dict(self, state: Mapping) -> None:
        self._order, self._pos = state["order"].to(self.rt.device), state["pos"]
        self.gen.set_state(state["gen"])

    def next_indices(self) -> Tensor:
        """The next batch's indices into the training set: a slice of the epoch's permutation, drawn
        from the run's own generator (tasks/classifier/lanes.py draws each lane's with its own task)."""
        if self._pos + self.batch_size > len(self._order):
            self._order = torch.randperm(self.n, device=self.rt.device, generator=self.gen)
            self._pos = 0
        idx = self._order[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return idx

    def crop_draws(self, b: int) -> tuple[Tensor, Tensor]:
        """Offsets (2, b, 1) and flips (b, 1, 1, 1) of `augment` for a batch of b, from the run's generator."""
        dev = self.rt.device
        offsets = torch.randint(0, 2 * self.pad + 1, (2, b, 1), device=dev, generator=self.gen)
        return offsets, torch.rand(b, 1, 1, 1, device=dev, generator=self.gen) < 0.5

    def _augment(self, x: Tensor) -> Tensor:
        return augment(x, self.pad, *self.crop_draws(len(x))).contiguous(memory_format=self.fmt)

    def _next_batch(self) -> tuple[Tensor, Tensor]:
        idx = self.next_indices()
        x, y = self.x_train[idx], self.y_train[idx]
        return (self._augment(x) if self.augment else x), y

    def train_step(self, opt: Mapping[str, OptimizerSet], measure: bool) -> dict[str, Tensor]:
        opt = opt["model"]
        x, y = self._next_batch()
        with self.rt.autocast():
            loss = self.loss(self.forward(x), y, self.label_smoothing)
        opt.zero_grad()
        loss.backward(create_graph=opt.create_graph)
        objective = self._objective_grad_norm(opt) if measure else None  # before the step moves w
        stats = opt.step(measure)
        return step_record(loss, stats, objective) if measure else {}

    def _objective_grad_norm(self, opt: OptimizerSet) -> Tensor | None:
        """|grad L + wd w| over the tensors whose decay is a gradient term, |grad L| over the
        rest, on the device; None when no decay is a gradient term (then it is opt's grad_norm)."""
        if self._decay is None or self._decay[0] is not opt:
            self._decay = opt, coupled_decay(opt)
        if not self._decay[1]:
            return None
        wd = {id(p): group["weight_decay"] for group, params in self._decay[1] for p in params}
        with torch.no_grad():
            return total_norm([p.grad.add(p.detach(), alpha=wd[id(p)]) if id(p) in wd else p.grad
                               for p in opt.params if p.grad is not None])

    @torch.no_grad()
    def evaluate(self) -> dict[str, Tensor]:
        self.net.eval()
        loss_sum = torch.zeros((), device=self.rt.device, dtype=self.dtype)
        correct = torch.zeros((), device=self.rt.device, dtype=torch.long)
        for i in range(0, len(self.y_test), self.eval_batch_size):
            x, y = self.x_test[i:i + self.eval_batch_size], self.y_test[i:i + self.eval_batch_size]
            with self.rt.autocast():
                logits = self.forward(x)
            loss_sum += self.loss(logits.to(self.dtype), y, 0.0) * len(y)  # bf16 autocast: summed in fp32
            correct += (logits.argmax(1) == y).sum()
        self.net.train()
        n = len(self.y_test)
        return {"eval/loss": loss_sum / n, "eval/acc": correct / n}

    def sharpness_loss(self) -> Tensor:
        """Training loss on a fixed batch, with its graph, for Hessian-vector products (no autocast:
        in the parameters' dtype; no augmentation, so every measurement sees the same function).
        The batch: `task.sharpness_batch` first training examples, the whole set in a full-batch
        run unless set smaller. BatchNorm updates
        copies of its running statistics: measuring must not change the model."""
        state = {**dict(self.net.named_parameters()), **{k: b.clone() for k, b in self.net.named_buffers()}}
        logits = torch.func.functional_call(self.net, state, (self.sharp_x,))
        return self.loss(logits, self.sharp_y, self.label_smoothing)

    def loss(self, logits: Tensor, y: Tensor, smoothing: float) -> Tensor:
        """The mean training loss of `task.loss` over the batch, with targets smoothed by `smoothing`."""
        if self.loss_kind == "cross_entropy":
            return F.cross_entropy(logits, y, label_smoothing=smoothing)
        return mse_one_hot(logits, y, smoothing)


def step_record(loss: Tensor, stats: Mapping[str, Tensor], objective: Tensor | None) -> dict[str, Tensor]:
    """A measured step's metrics: the loss, the optimizer's norms, and as `train/grad_norm` the
    objective's gradient norm where a weight decay is a gradient term (`train/loss_grad_norm`: the loss's)."""
    out = {"train/loss": loss.detach(), **{f"train/{k}": v for k, v in stats.items()}}
    out["train/loss_grad_norm"] = out["train/grad_norm"]
    if objective is not None:
        out["train/grad_norm"] = objective
    return out


def augment(x: Tensor, pad: int, offsets: Tensor, flip: Tensor) -> Tensor:
    """Each image of `x` (b, c, h, w) cropped after zero padding by `pad` pixels at `offsets`
    (2, b, 1: rows, columns) and flipped horizontally where `flip` (b, 1, 1, 1) holds."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad,) * 4)
    dy, dx = offsets
    rows = (dy + torch.arange(h, device=x.device))[:, None, :, None]  # b x 1 x h x 1
    cols = (dx + torch.arange(w, device=x.device))[:, None, None, :]  # b x 1 x 1 x w
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    crops = padded[batch, chans, rows, cols]
    return torch.where(flip, crops.flip(3), crops)


def mse_one_hot(logits: Tensor, y: Tensor, smoothing: float = 0.0) -> Tensor:
    """0.5 x mean over samples of sum over classes (logit - target)^2, the target one-hot, or
    (1 - smoothing) one-hot + smoothing / classes as cross-entropy's label smoothing has it."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # under bf16 autocast: fp32, as cross_entropy
    target = F.one_hot(y, logits.shape[1]).to(logits.dtype) * (1 - smoothing) + smoothing / logits.shape[1]
    return 0.5 * (logits - target).pow(2).sum(1).mean()


def _target(node: DictConfig):
    from hydra.utils import get_method

    return get_method(node._target_)
