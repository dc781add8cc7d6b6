"""Minimising an objective whose optimum is known, in float64, with any optimizer of conf/optim/.

    runner task=objective                                            # GD on a quadratic, kappa 10
    runner task=objective task.theory.lr='2/(mu+L)'                   # GD at the step theory picks
    runner task=objective problem=logistic task.theory.lr=1/L         # regularised logistic regression
    runner task=objective problem=reddi optim=adam optim.betas=[0,0.1] # Adam fails on Reddi et al.'s example
    runner task=objective problem=factorisation optim=muon            # Muon on a planted low-rank problem

The problem (tasks/objectives/problems.py, `problem=NAME`) knows x* and f*; every step the
optimizer sees the gradient of the step's loss (the whole objective, a minibatch of its rows with
`task.batch_size`, plus N(0, noise^2 I) with `task.noise`; both drawn from the run's own generator,
runner/task/rng.py, so a lane draws what its single run draws), and the task measures, at the point the
step starts from (x_t), the deterministic objective exactly: obj/subopt = f(x_t) - f* (the
primary), obj/dist (to the minimiser set), obj/grad_norm (the whole objective's gradient,
regulariser included), beside train/loss (what the step saw). Online problems (Reddi) add
obj/regret_avg = (1/t) sum_s f_s(x_s) - f_s(x*). The problem's constants (mu, L, kappa, ...), f*
and the step sizes `task.theory` chose go to summary.json's `constants`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from runner.common.expr import ExprError
from runner.task.device import Runtime
from runner.task.optim import OptimizerSet, total_norm
from runner.task.protocol import ConfigError
from runner.task.rng import randn, stream
from tasks.objectives import theory as step_sizes
from tasks.objectives.problems import Problem


class ObjectiveMinimisation:
    primary = "obj/subopt"
    lane_safe = ("noise",)  # task keys that may differ between lanes (README "Lanes"), beyond optim/sched/seed
    computes_in = "fp64"  # whatever the runner's precision: summary.json's `precision` (its rounding floor) says so

    def __init__(self, runtime: Runtime, model: Callable[..., nn.Module], problem: Callable[..., Problem],
                 steps: int = 1000, batch_size: int | None = None, noise: float = 0.0,
                 theory: Mapping[str, str] | None = None):
        self.problem = problem(device=runtime.device)
        self.iterate = model(shapes=self.problem.shapes).to(runtime.device)
        with torch.no_grad():
            for p, x0 in zip(self.iterate.parameters(), self.problem.start()):
                p.copy_(x0)
        self.xs = list(self.iterate.parameters())
        self.total_steps, self.batch_size, self.noise = int(steps), batch_size, noise
        try:
            chosen = step_sizes.values(theory or {}, self.problem.constants)
        except ExprError as e:  # 1/mu on a merely convex problem: the config's fault, before any step
            raise ConfigError([str(e)]) from None
        self.optim_values = {"model": chosen}  # the runner sets these keys of the optimizer's node
        self.constants = {**self.problem.constants, "f_star": self.problem.f_star, "theory": chosen}
        self.step_count, self.regret = 0, torch.zeros((), dtype=torch.float64, device=runtime.device)
        self.gen = stream("objective")  # minibatch rows and gradient noise

    @staticmethod
    def check(root: DictConfig) -> list[str]:
        from hydra.utils import get_object

        if root.get("problem") is None:
            return ["problem=null: task=objective needs a problem; pick one of conf/problem/ (problem=quadratic, ...)"]
        cls, cfg = get_object(root.problem._target_), root.task
        found = step_sizes.problems(cfg.theory or {}, cls.CONSTANTS, [k for k in root.optim if not str(k).startswith("_")],
                                    f"problem {cls.__name__}")
        found += cls.check(root.problem)
        if cfg.batch_size is not None and not cls.ROWS:
            found.append(f"task.batch_size={cfg.batch_size}: problem {cls.__name__} has no data rows to draw "
                         f"minibatches from; use task.noise for stochastic gradients, or problem=least_squares|logistic")
        if root.optim.get("create_graph") and cls.LINEAR:
            found.append(f"optim._target_={root.optim._target_}: needs second derivatives (create_graph), and the "
                         f"losses of problem {cls.__name__} are linear (no Hessian to estimate); pick a first-order optimizer")
        return found

    @staticmethod
    def lane_refusal(root: DictConfig) -> str | None:
        """Why this config's jobs cannot run as lanes (tasks/objectives/lanes.py), or None."""
        if root.optim.get("create_graph"):
            return "second-order optimizers (create_graph) do not run as lanes"
        return None

    @staticmethod
    def lanes(tasks: list[ObjectiveMinimisation], sizes: Mapping[str, list[int]]):
        from tasks.objectives.lanes import ObjectiveLanes

        return ObjectiveLanes(tasks, sizes)

    def models(self) -> Mapping[str, nn.Module]:
        return {"model": self.iterate}

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "regret": self.regret, "rng": self.gen.get_state()}

    def load_state_dict(self, state: Mapping) -> None:
        self.step_count, self.regret = state["step_count"], state["regret"]
        self.gen.set_state(state["rng"])

    def _rows(self) -> Tensor | None:
        if self.batch_size is None:
            return None
        return torch.randint(self.problem.n_samples, (self.batch_size,), generator=self.gen).to(self.regret.device)

    def train_step(self, opt: Mapping[str, OptimizerSet], measure: bool) -> dict[str, Tensor | float]:
        o, p = opt["model"], self.problem
        self.step_count += 1
        loss = p.loss(self.xs, self.step_count, self._rows())
        exact = self.batch_size is None and not p.online  # the step's gradient is the whole objective's
        out = {}
        if measure:
            with torch.no_grad():
                out = {"obj/subopt": p.subopt(self.xs), "train/loss": loss.detach()}
                if (dist := p.distance(self.xs)) is not None:
                    out["obj/dist"] = dist
            if not exact:
                out["obj/grad_norm"] = total_norm(torch.autograd.grad(p.value(self.xs), self.xs))
        if p.online:
            with torch.no_grad():
                self.regret += loss.detach() - p.loss([p.x_star], self.step_count)
        o.zero_grad()
        loss.backward(create_graph=o.create_graph)
        if measure and exact:
            out["obj/grad_norm"] = total_norm([x.grad.detach() for x in self.xs])
        if self.noise:
            with torch.no_grad():
                for x in self.xs:
                    x.grad.add_(randn(self.gen, x.shape, x), alpha=self.noise)
        stats = o.step(measure)
        with torch.no_grad():
            p.project(self.xs)
        if not measure:
            return {}
        out |= {"train/grad_norm": stats["grad_norm"], "train/update_norm": stats["update_norm"]}
        if p.online:
            out["obj/regret_avg"] = self.regret / self.step_count
        return out

    def evaluate(self) -> dict[str, Tensor | float]:
        return {}
