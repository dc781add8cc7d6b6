"""The games of the GAN task (`task.game=`): the players, their two losses, the equilibrium when it
is known, and what is measured of the generator. The dynamics (the GDA schemes) are in tasks/gan/task.py.

- `bilinear`: min_x max_y x^T A y + b^T x + c^T y, A with singular values spread over
  [sv_min, sv_max]; equilibrium x* = -A^-T c, y* = -A^-1 b.
- `dirac`: the Dirac-GAN of Mescheder et al. (2018): data at 0, generator a point mass at theta,
  discriminator D(x) = psi x; equilibrium (0, 0).
- `mog`: a real GAN on a 2-D mixture of Gaussians (`ring`: 8 modes on a circle of radius 2,
  std 0.02; `grid`: 5 x 5 modes 2 apart, std 0.05), generator and discriminator MLPs from the
  `model` group. Measured: gan/w2 (exact W2 to real samples, w2_samples of each), gan/w2_floor (the
  same between two real samples, mean of 3 draws: the noise floor), gan/hq (share of generated samples within 3
  std of their nearest mode) and gan/modes (modes with at least mode_min such samples).

Losses (`loss`): `standard` (minimax: G minimises log(1 - D(G(z)))), `nonsaturating` (G minimises
-log D(G(z))), `wgan` (D minimises D(fake) - D(real), G minimises -D(fake)) and `wgan_gp` (plus
gp_weight (|grad D| - 1)^2 at random interpolates). Penalties (`reg`): `r1` / `r2`, gamma/2 |grad D|^2
at real / generated samples. Each player minimises its own loss: ascent written as descent.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from runner.task.rng import stream
from tasks.shared.transport import w2

Players = Mapping[str, nn.Module]


class Point(nn.Module):
    """A player that is just a point in R^n (the bilinear game's x or y, Dirac-GAN's theta or psi)."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int = 0, init_scale: float = 1.0):
        super().__init__()
        self.z = nn.Parameter(init_scale * torch.randn(in_shape[0], dtype=torch.float64))


def gan_losses(d_real: Tensor, d_fake: Tensor, loss: str) -> tuple[Tensor, Tensor]:
    """(L_G, L_D) from the discriminator's logits on real and generated samples (the last
    dimension; leading ones are lanes, tasks/gan/lanes.py)."""
    if loss in ("wgan", "wgan_gp"):
        return -d_fake.mean(-1), d_fake.mean(-1) - d_real.mean(-1)
    loss_d = F.softplus(-d_real).mean(-1) + F.softplus(d_fake).mean(-1)  # -log D(real) - log(1 - D(fake))
    loss_g = -F.softplus(d_fake).mean(-1) if loss == "standard" else F.softplus(-d_fake).mean(-1)
    return loss_g, loss_d


class Bilinear:
    planar_names = ("generator x", "discriminator y")

    def __init__(self, device: torch.device, dim: int = 1, sv_min: float = 1.0, sv_max: float = 1.0, **_):
        u, _r = torch.linalg.qr(torch.randn(dim, dim, dtype=torch.float64))
        v, _r = torch.linalg.qr(torch.randn(dim, dim, dtype=torch.float64))
        self.A = (u @ torch.diag(torch.linspace(sv_min, sv_max, dim, dtype=torch.float64)) @ v.T).to(device)
        self.b, self.c = (torch.randn(dim, dtype=torch.float64).to(device) for _ in range(2))
        self.eq = (-torch.linalg.solve(self.A.T, self.c), -torch.linalg.solve(self.A, self.b))
        self.dim = dim

    def players(self, model: Callable[..., nn.Module], init_scale: float) -> dict[str, nn.Module]:
        return {r: model(in_shape=(self.dim,), init_scale=init_scale) for r in ("generator", "discriminator")}

    def sample(self) -> None:
        return None

    def losses(self, players: Players, batch: None = None) -> tuple[Tensor, Tensor]:
        x, y = players["generator"].z, players["discriminator"].z  # (dim,), or (lanes, dim) with A (lanes, dim, dim)
        f = (x.unsqueeze(-2) @ self.A @ y.unsqueeze(-1)).squeeze((-2, -1)) + (self.b * x).sum(-1) + (self.c * y).sum(-1)
        return f, -f

    def evaluate(self, players: Players, step: int) -> dict[str, float]:
        return {}


class Dirac:
    planar_names = (r"generator $\theta$", r"discriminator $\psi$")

    def __init__(self, device: torch.device, loss: str = "standard", reg: str = "none", gamma: float = 0.0,
                 gp_weight: float = 10.0, **_):
        self.loss, self.reg, self.gamma, self.gp_weight = loss, reg, gamma, gp_weight
        self.eq = (torch.zeros(1, dtype=torch.float64, device=device),) * 2

    players = Bilinear.players
    sample = Bilinear.sample
    evaluate = Bilinear.evaluate
    dim = 1

    def losses(self, players: Players, batch: None = None) -> tuple[Tensor, Tensor]:
        theta, psi = players["generator"].z, players["discriminator"].z
        loss_g, loss_d = gan_losses(psi * 0.0, psi * theta, self.loss)
        if self.reg != "none":  # grad_x D = psi at real (R1) and generated (R2) samples alike
            loss_d = loss_d + self.gamma / 2 * (psi ** 2).sum(-1)
        if self.loss == "wgan_gp":
            loss_d = loss_d + self.gp_weight * ((psi.abs() - 1) ** 2).sum(-1)
        return loss_g, loss_d


class Mixture:
    planar_names = None

    def __init__(self, device: torch.device, mixture: str = "ring", std: float | None = None, latent_dim: int = 16,
                 batch_size: int = 256, loss: str = "standard", reg: str = "none", gamma: float = 0.0,
                 gp_weight: float = 10.0, eval_samples: int = 2500, w2_samples: int = 1000, mode_min: int = 20,
                 dtype: torch.dtype = torch.float32, **_):
        if mixture == "ring":
            angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
            self.centers = 2.0 * torch.stack([angles.cos(), angles.sin()], 1)
        else:
            ticks = torch.arange(-4.0, 5.0, 2.0, dtype=torch.float64)
            self.centers = torch.cartesian_prod(ticks, ticks)
        self.centers = self.centers.to(device, dtype)
        self.std = std if std is not None else (0.02 if mixture == "ring" else 0.05)
        self.device, self.dtype, self.latent_dim, self.batch_size = device, dtype, latent_dim, batch_size
        self.loss, self.reg, self.gamma, self.gp_weight = loss, reg, gamma, gp_weight
        self.eval_samples, self.w2_samples, self.mode_min = eval_samples, w2_samples, mode_min
        self.eq = None
        # every draw of the game, at the start and while it trains (minibatches, WGAN-GP's interpolation,
        # evaluation noise), comes from the run's own stream, so a lane draws what its single run draws
        # (tasks/gan/lanes.py); drawn every step, it lives on the run's device
        self.gen = stream("gan/mog", device)
        self.eval_real = self.real(eval_samples)
        # one draw of the floor varies by ~20% (the share of samples per mode is random): average 3
        self.w2_floor = sum(w2(self.real(w2_samples), self.eval_real[:w2_samples]) for _ in range(3)) / 3
        self.snapshots: list[tuple[int, Tensor, dict]] = []

    def _randn(self, *shape: int) -> Tensor:
        return torch.randn(shape, device=self.device, dtype=self.dtype, generator=self.gen)

    def real(self, n: int) -> Tensor:
        idx = torch.randint(len(self.centers), (n,), device=self.device, generator=self.gen)
        return self.centers[idx] + self.std * self._randn(n, 2)

    def players(self, model: Callable[..., nn.Module], init_scale: float) -> dict[str, nn.Module]:
        return {"generator": model(in_shape=(self.latent_dim,), num_classes=2).to(self.dtype),
                "discriminator": model(in_shape=(2,), num_classes=1).to(self.dtype)}

    def sample(self) -> tuple[Tensor, ...]:
        """One minibatch: real samples, the generator's noise and, for WGAN-GP, the interpolation weights."""
        batch = (self.real(self.batch_size), self._randn(self.batch_size, self.latent_dim))
        if self.loss == "wgan_gp":
            batch += (torch.rand(self.batch_size, 1, device=self.device, dtype=self.dtype, generator=self.gen),)
        return batch

    def losses(self, players: Players, batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """(L_G, L_D) on a minibatch (samples along the second-to-last dimension; leading ones are lanes)."""
        real, noise = batch[:2]
        generator, disc = players["generator"], players["discriminator"]
        fake = generator(noise)
        real = real.requires_grad_(self.reg == "r1")
        d_real, d_fake = disc(real).squeeze(-1), disc(fake).squeeze(-1)
        loss_g, loss_d = gan_losses(d_real, d_fake, self.loss)
        if self.reg != "none":  # gradient penalty at real (R1) or generated (R2) samples
            at, d_at = (real, d_real) if self.reg == "r1" else (fake, d_fake)
            g = torch.autograd.grad(d_at.sum(), at, create_graph=True)[0]
            loss_d = loss_d + self.gamma / 2 * g.pow(2).sum(-1).mean(-1)
        if self.loss == "wgan_gp":
            eps = batch[2]
            mix = eps * real.detach() + (1 - eps) * fake
            g = torch.autograd.grad(disc(mix).sum(), mix, create_graph=True)[0]
            loss_d = loss_d + self.gp_weight * (g.norm(dim=-1) - 1).pow(2).mean(-1)
        return loss_g, loss_d

    def eval_noise(self) -> Tensor:
        return self._randn(self.eval_samples, self.latent_dim)

    @torch.no_grad()
    def evaluate(self, players: Players, step: int) -> dict[str, Tensor | float]:
        return self.measure(players["generator"](self.eval_noise()), step)

    @torch.no_grad()
    def measure(self, fake: Tensor, step: int) -> dict[str, Tensor | float]:
        """What is measured of `fake`, the generator's output at `eval_noise()`; kept for the pictures."""
        dist, nearest = torch.cdist(fake, self.centers).min(1)
        hq = dist < 3 * self.std
        per_mode = torch.bincount(nearest[hq], minlength=len(self.centers))
        out = {"gan/w2": w2(fake[:self.w2_samples], self.eval_real[:self.w2_samples]), "gan/w2_floor": self.w2_floor,
               "gan/hq": hq.float().mean(), "gan/modes": (per_mode >= self.mode_min).sum().float()}
        self.snapshots.append((step, fake[:1000].cpu(), out))  # for the pictures (tasks/gan/figures.py)
        return out


GAMES = {"bilinear": Bilinear, "dirac": Dirac, "mog": Mixture}
