"""Diffusion sampling with the sampler's error measured against targets whose noised scores are
exact: the order of convergence in the number of steps, as a paper would claim it.

    runner task=diffusion                                     # 2-D ring of Gaussians, VP, Karras grid, Euler
    runner task=diffusion sampler=heun task.process=ve task.grid=uniform
    runner task=diffusion task.target=gaussian task.dim=8 sampler=dpmpp_2m
    runner task=diffusion model=mlp optim=adam task.train_steps=3000   # a learned score

Targets (`task.target`) are Gaussian mixtures, so every noised marginal
p_t = sum_k w_k N(alpha_t mu_k, alpha_t^2 C_k + sigma_t^2 I) and its score are exact in closed form:
`gaussian` (one component, any mean and covariance in `dim` dimensions) and `gmm` (`mixture`: a
2-D `ring` or `grid`, or `random` means in `dim` dimensions). Processes (`task.process`): `vp`
with a linear or cosine schedule, and `ve` with sigma(t) = t (EDM); time grids `uniform`,
`quadratic` and `karras` (rho) over [t_min, t_max].

With `model=exact` the closed-form score is used and nothing is trained. With `model=mlp` a
network learns the score by denoising score matching (`train/loss`) for `task.train_steps` steps
with the selected optimizer, and is then sampled the same way (errors then include the score's).

After training, one sampling run per step count N of `task.steps` starts from the same initial
noise and, for the stochastic samplers, the same Brownian path (common random numbers), all drawn
from the run's own sampling generator (runner/task/rng.py; so lanes of a seed sweep, tasks/diffusion/
lanes.py, draw what their single runs draw), and logs at step = training steps + N:
- diff/err: RMS distance of each sample to where the exact dynamics (exact score, exact flow for a
  Gaussian, else a much finer solve) take the same noise. The primary metric; diff/err_floor is
  the error of that reference (its distance to a 2x coarser one, an overestimate).
- diff/w2 (POT, `ot_samples` points against a fresh target sample) with diff/w2_floor, the W2
  between two independent target samples of that size; diff/mmd (RBF kernel of bandwidth
  `mmd_bandwidth`) with diff/mmd_floor; for a Gaussian target diff/w2_gauss, the closed-form W2
  between the Gaussian fitted to all samples and the target, with its floor (the same for the
  reference samples); diff/steps, diff/nfe, time/sample_s.
The target is p_{t_min}, where sampling stops. The summary's `convergence` is this task's own
verdict, against NFE (`conv/x`): the order is minus the slope of log error on log NFE (= log steps
for fixed-step samplers), with its 95% interval, fitted on the last `metrics.fit_tail` of the
points above the error floor. The floor is what the error cannot fall below here: the
reference's own error (`<metric>_floor`), the rounding of the arithmetic the score is computed in
(float64 closed forms; a network's float32 or bf16), or a plateau where the error stopped falling
(a learned score's own error, which no step count removes); points within 10x of it are left out.
"""

from __future__ import annotations

import math
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
import torchsde
from hydra.utils import get_object
from omegaconf import DictConfig
from torch import Tensor, nn

from runner.task.convergence import said
from runner.task.device import Runtime
from runner.task.optim import OptimizerSet
from runner.task.rng import stream
from tasks.diffusion.checks import check_config
from tasks.diffusion.closed_forms import (Dynamics, Process, default_times, gaussian_flow, make_target, mmd,
                                          rms_distance, time_grid, w2_gaussian)
from tasks.diffusion.orders import FLOOR_MARGIN, MIN_POINTS, ROUNDING, error_floor, local_orders, order_verdict
from tasks.diffusion.samplers import ReverseSDE, adaptive
from tasks.shared.png import save_tight
from tasks.shared.transport import w2 as sample_w2

TIME_FEATURES = 9  # log-sigma and 4 sine/cosine pairs: the learned model's time input


# ---- models ----------------------------------------------------------------------------------
class ExactScore(nn.Module):
    """model=exact: no network; the task scores with the closed form of the noised target."""

    def __init__(self, in_shape: tuple[int, ...] = (), num_classes: int = 0):
        super().__init__()


def time_features(sigma: Tensor, n: int) -> Tensor:
    c = sigma.log().expand(n, 1) / 4
    freqs = 2.0 ** torch.arange(4, dtype=c.dtype, device=c.device)
    return torch.cat([c, (c * freqs).sin(), (c * freqs).cos()], 1)


# ---- the task --------------------------------------------------------------------------------
class DiffusionSampling:
    primary = "diff/err"
    # task keys that may differ between lanes (README "Lanes"): each lane's own sample counts and
    # measurements; the time grids (`steps`), the target and the process are the group's
    lane_safe = ("samples", "ot_samples", "mmd_bandwidth", "ref_tol")

    def __init__(self, runtime: Runtime, model: Callable[..., nn.Module], sampler: Callable[[], Callable],
                 target: str = "gmm", dim: int = 2, mixture: str = "ring", components: int = 8, scale: float = 3.0,
                 std: float = 0.3, mean: float | list | None = None, cov: float | list | None = None,
                 process: str = "vp", schedule: str = "linear", beta_min: float = 0.1, beta_max: float = 20.0,
                 t_min: float | None = None, t_max: float | None = None, grid: str = "karras", rho: float = 7.0,
                 prior: str = "exact", steps: int | list[int] = (4, 8, 16, 32, 64, 128), samples: int = 10000,
                 ot_samples: int = 1500, mmd_bandwidth: float = 1.0, ref_factor: int = 4, ref_tol: float = 1e-11,
                 train_steps: int = 2000, batch_size: int = 512):
        self.rt, dev = runtime, runtime.device
        self.steps = [int(steps)] if isinstance(steps, int) else [int(n) for n in steps]
        t_lo, t_hi = default_times(process, schedule)
        self.process = Process(process, schedule, beta_min, beta_max, t_min or t_lo, t_max or t_hi)
        self.target = make_target(target, dim, mixture, components, scale, std, mean, cov, dev)
        self.exact = Dynamics(self.process, self.exact_score)
        self.net = model(in_shape=(self.target.dim + TIME_FEATURES,), num_classes=self.target.dim).to(dev)
        self.learned = not isinstance(self.net, ExactScore)
        self.dyn = Dynamics(self.process, self.learned_score) if self.learned else self.exact
        # the precision the score is computed in: float64 closed forms, or the network's (autocast)
        self.precision = (runtime.dtype or torch.float32) if self.learned else torch.float64
        self.total_steps = int(train_steps) if self.learned else 0
        self.sampler, self.grid_kind, self.rho, self.prior = sampler(), grid, rho, prior
        self.samples, self.ot_samples, self.bandwidth = samples, ot_samples, mmd_bandwidth
        self.ref_factor, self.ref_tol, self.batch_size = ref_factor, ref_tol, batch_size
        tg = self.target  # E|x_0|^2 / dim, for the network's input scaling
        moments = (tg.means ** 2).sum(1) + tg.covs.diagonal(dim1=1, dim2=2).sum(1)
        self.second_moment = float(tg.weights @ moments) / tg.dim
        self.records: list[dict[str, float]] = []
        self.shown: dict[int, Tensor] = {}  # N -> samples for the picture
        self.fit: dict[str, float | str | None] | None = None  # the last convergence fit, for the picture
        self.gen = stream("diffusion/sampling")  # assess()'s draws: initial noise, Brownian paths, target samples

    @staticmethod
    def check(root: DictConfig) -> list[str]:
        problems = check_config(root.task)
        methods = getattr(get_object(root.sampler._target_), "METHODS", None)
        if methods and root.sampler.get("method") not in methods:
            problems.append(f"sampler.method={root.sampler.get('method')!r}: allowed: {', '.join(methods)}")
        return problems

    @staticmethod
    def lane_refusal(root: DictConfig) -> str | None:
        """Why this config's jobs cannot run as lanes (tasks/diffusion/lanes.py), or None."""
        if get_object(root.model._target_) is not ExactScore:
            return (f"model={root.model._target_.rsplit('.', 1)[-1]}: a learned score is trained per run; "
                    f"only model=exact runs as lanes")
        if root.task.target == "gmm" and root.task.mixture == "random":
            return "task.mixture=random: each seed draws its own target, so the lanes share no score"
        return None

    @staticmethod
    def lanes(tasks: list[DiffusionSampling], sizes: Mapping[str, list[int]]):
        from tasks.diffusion.lanes import DiffusionLanes

        return DiffusionLanes(tasks, sizes)

    def models(self) -> Mapping[str, nn.Module]:
        return {"score": self.net} if self.learned else {}

    def state_dict(self) -> dict:
        return {"rng": self.gen.get_state()}

    def load_state_dict(self, state: Mapping) -> None:
        self.gen.set_state(state["rng"])

    # ---- scores -------------------------------------------------------------------------
    def exact_score(self, x: Tensor, t: Tensor) -> Tensor:
        return self.target.noised(*self.process.alpha_sigma(t)).score(x)

    def _net_eps(self, x: Tensor, t: Tensor) -> Tensor:
        """The network predicts the noise eps from x_t scaled to unit variance and log sigma_t."""
        alpha, sigma = self.process.alpha_sigma(t)
        x_in = x / (alpha ** 2 * self.second_moment + sigma ** 2).sqrt().reshape(-1, 1)
        with self.rt.autocast():
            return self.net(torch.cat([x_in, time_features(sigma.reshape(-1, 1), len(x))], 1).float()).float()

    def learned_score(self, x: Tensor, t: Tensor) -> Tensor:
        with torch.no_grad():
            return -self._net_eps(x, t).to(x.dtype) / self.process.alpha_sigma(t)[1]

    # ---- denoising score matching ---------------------------------------------------------
    def train_step(self, opt: Mapping[str, OptimizerSet], measure: bool) -> dict[str, Tensor]:
        opt = opt["score"]
        x0 = self.target.sample(self.batch_size)
        lo, hi = self.process.t_min, self.process.t_max
        u = torch.rand(self.batch_size, 1, dtype=torch.float64, device=x0.device)
        # VE spans sigma from 0.002 to 80: train uniformly in log sigma, as EDM does; VP in t
        t = lo * (hi / lo) ** u if self.process.kind == "ve" else lo + (hi - lo) * u
        alpha, sigma = self.process.alpha_sigma(t)
        eps = torch.randn_like(x0)
        loss = ((self._net_eps(alpha * x0 + sigma * eps, t) - eps.float()) ** 2).mean()
        opt.zero_grad()
        loss.backward(create_graph=opt.create_graph)
        stats = opt.step(measure)
        if not measure:
            return {}
        return {"train/loss": loss.detach(), **{f"train/{k}": v for k, v in stats.items()}}

    def evaluate(self) -> dict[str, Tensor]:
        return {}

    # ---- sampling at every step count, with common random numbers ----------------------------
    def assess(self) -> Iterator[dict[str, float]]:
        """One record per step count N: the sampler from the same noise (and Brownian path)."""
        x_T, bm = self.draw()
        reference, ref_floor = self.reference(x_T, bm)
        floors = self.floors(reference, ref_floor)
        for n_steps in self.steps:
            t0 = time.perf_counter()
            x, nfe = self.sampler(self.dyn, x_T, self.grid(n_steps), bm)
            self.rt.sync()
            yield self.measure(n_steps, x, nfe, time.perf_counter() - t0, reference, floors)
        self.shown[0] = self.fresh[:, :2].cpu()

    def draw(self) -> tuple[Tensor, torchsde.BrownianInterval]:
        """The sampling's random numbers, from the run's generator in this order: the initial noise
        x_T, the Brownian path's entropy, two target samples (`fresh`, `other`: W2 and MMD, their floors)."""
        dev, n, p, gen = self.rt.device, self.samples, self.process, self.gen
        alpha_max, sigma_max = p.alpha_sigma(torch.tensor(p.t_max, dtype=torch.float64))
        if self.prior == "exact":  # then the exact dynamics end exactly on the target
            x_T = self.target.noised(alpha_max, sigma_max).sample(n, gen)
        else:
            x_T = sigma_max.item() * torch.randn(n, self.target.dim, dtype=torch.float64, generator=gen).to(dev)
        bm = torchsde.BrownianInterval(t0=-p.t_max, t1=-p.t_min, size=(n, self.target.dim), dtype=torch.float64,
                                       device=dev, entropy=int(torch.randint(2 ** 31, (), generator=gen)),
                                       levy_area_approximation="space-time")
        self.end = self.target.noised(*p.alpha_sigma(torch.tensor(p.t_min, dtype=torch.float64)))
        self.fresh, self.other = self.end.sample(self.ot_samples, gen), self.end.sample(self.ot_samples, gen)
        return x_T, bm

    def floors(self, reference: Tensor, ref_floor: float) -> dict[str, float]:
        """What no sampler's error can fall below here (`draw()` made `fresh` and `other`)."""
        out = {"diff/err_floor": ref_floor, "diff/w2_floor": sample_w2(self.other, self.fresh),
               "diff/mmd_floor": mmd(self.other, self.fresh, self.bandwidth)}
        if len(self.end.means) == 1:
            out["diff/w2_gauss_floor"] = w2_gaussian(reference, self.end.means[0], self.end.covs[0])
        return out

    def measure(self, n_steps: int, x: Tensor, nfe: int, seconds: float, reference: Tensor,
                floors: Mapping[str, float]) -> dict[str, float]:
        """The record of the samples `x` of N = `n_steps`, kept for the fit and the pictures."""
        record = {"step": self.total_steps + n_steps, "diff/steps": float(n_steps), "diff/nfe": float(nfe),
                  "time/sample_s": seconds, "diff/err": rms_distance(x, reference),
                  "diff/w2": sample_w2(x[:self.ot_samples], self.fresh),
                  "diff/mmd": mmd(x[:self.ot_samples], self.fresh, self.bandwidth), **floors}
        if len(self.end.means) == 1:
            record["diff/w2_gauss"] = w2_gaussian(x, self.end.means[0], self.end.covs[0])
        self.records.append(record)
        self.shown[n_steps] = x[:2000, :2].cpu()
        return record

    def grid(self, n: int) -> Tensor:
        return time_grid(self.grid_kind, n, self.process.t_min, self.process.t_max, self.rho, device=self.rt.device)

    def reference(self, x_T: Tensor, bm: torchsde.BrownianInterval) -> tuple[Tensor, float]:
        """Where the exact dynamics take the same noise, and an overestimate of that point's own
        error (`references`: the finer of the two, and its RMS distance to the other)."""
        fine, coarse = self.references(x_T, bm)
        return fine, rms_distance(fine, coarse)

    @property
    def rowwise_reference(self) -> bool:
        """Whether each sample's reference depends on its own row only (so samples may be batched):
        not the adaptive solve, whose steps the error of all rows together chooses."""
        return getattr(self.sampler, "stochastic", False) or len(self.target.means) == 1

    def references(self, x_T: Tensor, bm: torchsde.BrownianInterval) -> tuple[Tensor, Tensor]:
        """The exact flow map for a Gaussian (twice: its error is rounding); otherwise the flow solved
        by dopri8 at ref_tol, or the reverse SDE on the same path by stochastic Runge-Kutta (strong
        order 1.5 here: the noise is additive) on a ref_factor-times finer grid, each with a 100x
        looser tolerance or a 2x coarser grid beside it."""
        p, grid = self.process, self.grid(self.ref_factor * max(self.steps))
        if getattr(self.sampler, "stochastic", False):
            fine, _ = ReverseSDE("srk")(self.exact, x_T, grid, bm)
            coarse, _ = ReverseSDE("srk")(self.exact, x_T, grid[::2], bm)
        elif len(self.target.means) == 1:
            fine = coarse = gaussian_flow(self.target, p, x_T, p.t_max, p.t_min)
        else:
            def velocity(t: Tensor, x: Tensor) -> Tensor:
                f, g2 = p.coefficients(t)
                return f * x - 0.5 * g2 * self.exact_score(x, t)

            fine = adaptive(velocity, x_T, grid[0], grid[-1], "dopri8", self.ref_tol)
            coarse = adaptive(velocity, x_T, grid[0], grid[-1], "dopri8", 100 * self.ref_tol)
        return fine, coarse

    def convergence(self, metric: str, tail: float = 1.0) -> dict[str, float | str | list | None]:
        """The verdict on `metric` against NFE (the runner's step fit is replaced whole): its error
        floor found and left out (`error_floor`), then the order fitted on the last `tail` fraction
        (3 at least) of the points above it (`order_verdict`)."""
        pts = [(r["diff/nfe"], r[metric], r.get(f"{metric}_floor", 0.0)) for r in self.records
               if metric in r and math.isfinite(r[metric]) and r[metric] > 0]
        nfe, err, ref = (np.array(c, dtype=float).reshape(-1) for c in zip(*pts)) if pts else (np.array([]),) * 3
        rounding = ROUNDING * float(torch.finfo(self.precision).eps) * math.sqrt(self.second_moment * self.target.dim)
        k, level, what = error_floor(err, np.maximum(ref, rounding), ref > rounding)
        first = k  # the fitted points: the last `tail` of those above the floor
        if what and k < MIN_POINTS:  # (nearly) all at the floor: the verdict is what the error does there
            first, floor_note = len(nfe), (f"; the error is at a floor from NFE {nfe[k]:g} on ({what}), "
                                           f"{k} points {FLOOR_MARGIN}x above it: too few for an order")
        elif what:
            floor_note = f"; from NFE {nfe[k]:g} on, {len(nfe) - k} left out within {FLOOR_MARGIN}x of {what}"
        out: dict[str, float | str | list | None] = {
            "conv/metric": metric, "conv/x": "diff/nfe", "conv/floor": float(nfe[k]) if first < len(nfe) else None,
            "conv/floor_level": level if first < len(nfe) else None, "conv/local": local_orders(nfe[:k], err[:k])}
        start = max(0, first - max(MIN_POINTS, math.ceil(tail * first)))
        verdict = order_verdict(nfe[start:first], err[start:first])
        if first > k and verdict["conv/kind"] != "stalled":  # a trend at the floor is no order
            verdict = {**order_verdict(nfe[:k], err[:k]),
                       **said("none", f"{k} points above the floor, {MIN_POINTS} needed for an order", "")}
        out.update(verdict)
        out["conv/reason"] += floor_note if what else ""
        self._window = nfe[start:first], err[start:first]  # for the picture's line
        self.fit = out
        return out

    # ---- pictures ------------------------------------------------------------------------------
    def figures(self, run_dir: Path) -> dict[str, Path]:
        """Samples against the target (first two coordinates), and error against NFE (log-log)."""
        if not self.records:
            return {}
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        shown = [n for n in self.steps if n in self.shown]
        shown = sorted({shown[0], shown[len(shown) // 2], shown[-1]})
        fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 3.6), squeeze=False)
        for ax, n in zip(axes[0], shown):
            ax.scatter(*self.shown[0].T, s=2, c="grey", alpha=0.4, label="target")
            ax.scatter(*self.shown[n].T, s=2, c="C0", alpha=0.5, label="samples")
            ax.set_title(f"{type(self.sampler).__name__} {getattr(self.sampler, 'method', '')} N={n}", fontsize=9)
            ax.set_aspect("equal", adjustable="datalim")
        axes[0][0].legend(fontsize=7, markerscale=4, loc="upper right")
        samples = run_dir / "samples.png"
        save_tight(fig, samples, dpi=110)
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        nfe = [r["diff/nfe"] for r in self.records]
        for i, key in enumerate(("diff/err", "diff/w2", "diff/w2_gauss", "diff/mmd")):
            if key in self.records[0]:
                ax.loglog(nfe, [r[key] for r in self.records], "o-", c=f"C{i}", label=key)
                ax.axhline(self.records[0][f"{key}_floor"], c=f"C{i}", ls=":", lw=1)
        fit = self.fit or self.convergence(self.primary)
        metric = fit["conv/metric"]
        if fit["conv/floor"] is not None:  # the points left out as the floor: ringed, and its level
            left = [(r["diff/nfe"], r[metric]) for r in self.records if r["diff/nfe"] >= fit["conv/floor"]]
            ax.loglog(*zip(*left), "o", mfc="none", mec="k", ms=9, label=f"left out: floor from NFE {fit['conv/floor']:g}")
            ax.axhline(fit["conv/floor_level"], c="k", ls="-.", lw=0.8)
        if fit["conv/order"] is not None:
            x, y = (np.array(v) for v in self._window)
            slope, intercept = np.polyfit(np.log(x), np.log(y), 1)  # the fit's line (its point estimate)
            ax.loglog(x, np.exp(intercept) * x ** slope, "k--", lw=1.2, label=f"fit: NFE^{slope:.2f}")
        ax.set_title(textwrap.fill(f"{metric}: {fit['conv/reason']} ([ ]: 95% interval)", 80), fontsize=8)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # 2x10^2 3x10^2 ... overlap
        ax.set_xlabel("NFE (score evaluations)")
        ax.set_ylabel("error (dotted: reference or noise floor)")
        ax.legend(fontsize=7)
        errors = run_dir / "error_vs_nfe.png"
        save_tight(fig, errors, dpi=110)
        plt.close(fig)
        return {"diff/samples": samples, "diff/error_vs_nfe": errors}
