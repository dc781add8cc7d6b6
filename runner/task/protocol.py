"""The contract between the runner and a task (`tasks/<family>/task.py`).

A task is a plain class built from `conf/task/<name>.yaml`. The runner calls it with the live
objects it owns (runtime, model factory); the task owns data, forward, loss, backward and the
`opt.step()` calls, in reading order, in its own file (helpers beside it in its package).

Optional: `state_dict()` / `load_state_dict(state)` for state the runner cannot see (a data
order, a sampler's generator, a previous gradient), saved in checkpoints beside the models,
optimizers and global RNGs, so that a resumed run continues exactly as the uninterrupted one.

Optional: `assess()`, measurements after training, yielding one record each with its own
`step` (a diffusion task: its sampler at every step count N of its grid, at step = training
steps + N); `convergence(metric, tail)`, the task's own fit of `metric` on the last `tail` fraction of
its points (`conv/*` keys, README "Convergence verdict"), replacing the runner's whole (diffusion: log error against log NFE); `figures(run_dir)`,
{key: PNG path} saved after the run and sent to the tracker.

Optional: `fp64 = True`, a class attribute saying that with `precision=fp64` the task computes in
float64 throughout (its models, data and losses; `Runtime.param_dtype`); without it fp64 is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn

    from runner.task.optim import OptimizerSet

Metrics = Mapping[str, "torch.Tensor | float"]


class ConfigError(ValueError):
    """A config that cannot work, each problem naming the key, the value and what is allowed: raised
    by the validator before any work starts, or by a task whose problem shows only once it is built
    (1/mu on a problem with mu = 0). The run is refused, not failed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid config: " + "; ".join(problems))


class Task(Protocol):
    primary: str
    """Name of the metric that goes to zero at the solution; its tail is fitted."""

    total_steps: int
    """The run's budget in optimisation steps (from epochs or steps in the task config)."""

    def models(self) -> Mapping[str, nn.Module]:
        """The trained modules by role: {"model": net}, {"generator": G, "discriminator": D}, ..."""
        ...

    def train_step(self, opt: Mapping[str, OptimizerSet], measure: bool) -> Metrics:
        """One optimisation step. With `measure`, return this step's metrics as device tensors;
        the runner transfers them to the host once per `log_every` steps."""
        ...

    def evaluate(self) -> Metrics:
        """Held-out evaluation (`eval/*`), as device tensors or floats."""
        ...
