"""Diffusion samplers: from noise at t_max to samples at t_min along a decreasing time grid.

    runner task=diffusion sampler=heun          # any of the classes below, through conf/sampler/*.yaml

Every sampler is called as `sampler(dyn, x, grid, bm)` and returns (samples, NFE): `dyn` is the
noised process with a score (tasks.diffusion.closed_forms.Dynamics), `x` the initial noise, `grid` the times
t_max = t_0 > t_1 > ... > t_N = t_min, and `bm` one Brownian path on [-t_max, -t_min] (reverse
time runs forward in u = -t) that the stochastic samplers draw their noise from, so that every
step count sees the same noise (common random numbers) and a finer grid refines the same path.
A sampler is `rowwise` when each sample's path depends on its own row of `x` (and of `bm`) only, so
that the samples of many runs may be stacked into one call (lanes, tasks/diffusion/lanes.py): all
but the adaptive ODE methods, whose step sizes the error of all rows together chooses.

The forward process is x_t = alpha_t x_0 + sigma_t eps with drift f = d log(alpha)/dt and squared
diffusion g^2 = d sigma^2/dt - 2 f sigma^2 (tasks.diffusion.task.Process). In those terms:
- probability-flow ODE  dx/dt = f x - g^2/2 score(x, t), integrated by torchdiffeq (euler, heun2,
  rk4 = the 3/8 rule, dopri5 adaptive);
- reverse SDE  dx = (f x - g^2 score) dt + g dW (backwards in t), by torchsde's Euler-Maruyama;
- DDIM (eta = 0), DDPM ancestral sampling and DPM-Solver++(2M) in terms of the denoiser
  x0(x, t) = (x + sigma^2 score) / alpha, each step written out below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torchsde
from torch import Tensor
from torchdiffeq import odeint

if TYPE_CHECKING:
    from tasks.diffusion.closed_forms import Dynamics


class ProbabilityFlow:
    """The probability-flow ODE with a torchdiffeq method. Fixed-step methods step exactly on the
    grid; adaptive ones (dopri5, ...) choose their steps: a grid of N steps stands for the
    tolerance rtol = atol = N^-tol_power, and their NFE is what they used."""

    stochastic = False
    FIXED, ADAPTIVE = ("euler", "midpoint", "heun2", "heun3", "rk4"), ("dopri5", "dopri8", "bosh3", "adaptive_heun")
    METHODS = FIXED + ADAPTIVE  # torchdiffeq's names

    def __init__(self, method: str = "euler", tol_power: float = 4.0):
        self.method, self.tol_power = method, tol_power
        self.rowwise = method not in self.ADAPTIVE

    def __call__(self, dyn: Dynamics, x: Tensor, grid: Tensor, bm: torchsde.BrownianInterval) -> tuple[Tensor, int]:
        nfe = 0

        def velocity(t: Tensor, x: Tensor) -> Tensor:
            nonlocal nfe
            nfe += 1
            f, g2 = dyn.process.coefficients(t)
            return f * x - 0.5 * g2 * dyn.score(x, t)

        if self.method in self.ADAPTIVE:
            return adaptive(velocity, x, grid[0], grid[-1], self.method, (len(grid) - 1) ** -self.tol_power), nfe
        return odeint(velocity, x, grid, method=self.method)[-1], nfe


def adaptive(velocity: Callable[[Tensor, Tensor], Tensor], x: Tensor, t_from: Tensor, t_to: Tensor, method: str,
             tol: float) -> Tensor:
    """x carried from t_from to t_to by an adaptive torchdiffeq method at rtol = atol = tol. The
    steps never pass t_to (`step_t`) nor does the first one probe beyond it (`first_step`): below
    t_min the process may not exist (vp: sigma^2 < 0 for t < 0)."""
    first = 1e-3 * float(abs(t_from - t_to))
    path = odeint(velocity, x, torch.stack([t_from, t_to]), method=method, rtol=tol, atol=tol,
                  options={"step_t": t_to.reshape(1), "first_step": first})
    return path[-1]


class DDIM:
    """DDIM with eta = 0 (Song et al. 2021): the exact solution of the probability-flow ODE when the
    noise prediction eps = -sigma score is held constant over the step."""

    stochastic, rowwise = False, True

    def __call__(self, dyn: Dynamics, x: Tensor, grid: Tensor, bm: torchsde.BrownianInterval) -> tuple[Tensor, int]:
        for t, s in zip(grid[:-1], grid[1:]):
            (a_t, s_t), (a_s, s_s) = dyn.process.alpha_sigma(t), dyn.process.alpha_sigma(s)
            eps = -s_t * dyn.score(x, t)
            x0 = (x - s_t * eps) / a_t
            x = a_s * x0 + s_s * eps
        return x, len(grid) - 1


class Ancestral:
    """DDPM ancestral sampling (Ho et al. 2020): each step draws x_s from the forward process's
    posterior q(x_s | x_t, x_0) at the denoiser's x_0. Its standard-normal draw is the Brownian
    increment over the step divided by its standard deviation, so as the grid refines the
    sampler follows the reverse SDE driven by the same path."""

    stochastic, rowwise = True, True

    def __call__(self, dyn: Dynamics, x: Tensor, grid: Tensor, bm: torchsde.BrownianInterval) -> tuple[Tensor, int]:
        for t, s in zip(grid[:-1], grid[1:]):
            (a_t, s_t), (a_s, s_s) = dyn.process.alpha_sigma(t), dyn.process.alpha_sigma(s)
            x0 = dyn.denoise(x, t)
            a_ts = a_t / a_s
            var_ts = s_t ** 2 - a_ts ** 2 * s_s ** 2  # variance of x_t given x_s
            mean = a_ts * s_s ** 2 / s_t ** 2 * x + a_s * var_ts / s_t ** 2 * x0
            z = bm(-t, -s) / (t - s).sqrt()
            x = mean + (var_ts.sqrt() * s_s / s_t) * z
        return x, len(grid) - 1


class ReverseSDE:
    """The reverse-time SDE, stepped by torchsde (`method`: euler = Euler-Maruyama) exactly on the
    grid, in the forward variable u = -t."""

    stochastic, rowwise = True, True
    METHODS = ("euler", "milstein", "srk")  # torchsde's methods for Ito SDEs with diagonal noise

    def __init__(self, method: str = "euler"):
        self.method = method

    def __call__(self, dyn: Dynamics, x: Tensor, grid: Tensor, bm: torchsde.BrownianInterval) -> tuple[Tensor, int]:
        sde = _ReverseTime(dyn)
        for t, s in zip(grid[:-1], grid[1:]):
            u = torch.stack([-t, -s])
            # dt a hair longer than the step: torchsde steps min(u + dt, end), so exactly one step
            x = torchsde.sdeint(sde, x, u, bm=bm, method=self.method, dt=float(t - s) * (1 + 1e-9))[-1]
        return x, sde.nfe


class _ReverseTime(torch.nn.Module):
    """dx = -(f x - g^2 score) du + g dW in u = -t, diagonal noise (g does not depend on x)."""

    noise_type, sde_type = "diagonal", "ito"

    def __init__(self, dyn: Dynamics):
        super().__init__()
        self.dyn, self.nfe = dyn, 0
        self._last: tuple[tuple, Tensor] | None = None

    def f(self, u: Tensor, x: Tensor) -> Tensor:
        # sdeint checks the drift's shape at (u0, x0) and then steps from the same point: the
        # second call is answered from this one-entry cache, so a step costs one score evaluation
        key = (float(u), x.data_ptr(), x._version, x.shape)
        if self._last is None or self._last[0] != key:
            self.nfe += 1
            f, g2 = self.dyn.process.coefficients(-u)
            self._last = key, -(f * x - g2 * self.dyn.score(x, -u))
        return self._last[1]

    def g(self, u: Tensor, x: Tensor) -> Tensor:
        return self.dyn.process.coefficients(-u)[1].sqrt().expand_as(x)


class DPMSolverPP2M:
    """DPM-Solver++(2M) (Lu et al. 2022): exponential integrator in lambda = log(alpha / sigma) on
    the denoiser, second order by a linear multistep correction with the previous step's x_0
    (the first step is first order, which is DDIM)."""

    stochastic, rowwise = False, True

    def __call__(self, dyn: Dynamics, x: Tensor, grid: Tensor, bm: torchsde.BrownianInterval) -> tuple[Tensor, int]:
        x0_prev, h_prev = None, None
        for t, s in zip(grid[:-1], grid[1:]):
            (a_t, s_t), (a_s, s_s) = dyn.process.alpha_sigma(t), dyn.process.alpha_sigma(s)
            h = torch.log(a_s / s_s) - torch.log(a_t / s_t)
            x0 = dyn.denoise(x, t)
            if x0_prev is None:
                d = x0
            else:
                r = h_prev / h
                d = (1 + 1 / (2 * r)) * x0 - 1 / (2 * r) * x0_prev
            x = (s_s / s_t) * x - a_s * torch.expm1(-h) * d
            x0_prev, h_prev = x0, h
        return x, len(grid) - 1
