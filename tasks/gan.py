"""Min-max games trained by gradient descent-ascent (GDA), with the game's convergence measured.

    runner task=gan                                                # bilinear game, simultaneous GDA
    runner task=gan task.scheme=extragradient                      # converges where GDA spirals out
    runner task=gan task.game=dirac task.reg=r1 task.gamma=0.3     # Dirac-GAN with a gradient penalty
    runner task=gan task.scheme=optimistic optim=adam              # Optimistic Adam

Both players descend their own loss: the generator (x) minimises L_G, the discriminator (y)
minimises L_D (for the zero-sum bilinear game L_D = -L_G: ascent written as descent on the negated
loss, so every optimizer works, `maximize` flag or not). The game's vector field is
F(z) = (dL_G/dx, dL_D/dy) at z = (x, y).

Schemes (`task.scheme`), each with any `optim` applying the update:
- simultaneous: both players step from F(z_t).
- alternating:  the discriminator steps first, the generator steps from the updated point.
- extragradient: a trial step to z' with F(z_t), then the real step from z_t with F(z'): the
  parameters *and the optimizer state* are restored after the trial step (with Adam: Extra-Adam).
- optimistic: the step uses 2 F(z_t) - F(z_{t-1}) in place of F(z_t) (optimistic GDA; with Adam
  fed these gradients: Optimistic Adam).
`train/grad_evals` counts evaluations of F (extragradient: two per step).

Games (`task.game`): `bilinear`, min_x max_y x^T A y + b^T x + c^T y with A's singular values
spread over [sv_min, sv_max] and the equilibrium x* = -A^-T c, y* = -A^-1 b; `dirac`, the Dirac-GAN
of Mescheder et al. (2018): generator a point mass at theta, data at 0, discriminator D(x) = psi x,
equilibrium (0, 0), with the standard, non-saturating or WGAN loss and R1/R2 penalties.
gan/jac_max_real and gan/jac_max_abs are the largest real part and modulus of the eigenvalues of
the Jacobian of v = -F (negative real parts everywhere: locally attracting; zero: cycling).
Primary convergence metric: gan/dist_to_eq.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from runner.device import Runtime
from runner.optim import OptimizerSet

GAMES, SCHEMES, LOSSES, REGS = ("bilinear", "dirac"), ("simultaneous", "alternating", "extragradient", "optimistic"), \
    ("standard", "nonsaturating", "wgan"), ("none", "r1", "r2")
ROLES = ("generator", "discriminator")


class Point(nn.Module):
    """A player that is just a point in R^n (the bilinear game's x or y, Dirac-GAN's theta or psi)."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int = 0, init_scale: float = 1.0):
        super().__init__()
        self.z = nn.Parameter(init_scale * torch.randn(in_shape[0], dtype=torch.float64))


class GameGDA:
    primary = "gan/dist_to_eq"

    def __init__(self, runtime: Runtime, model: Callable[..., nn.Module], game: str = "bilinear",
                 scheme: str = "simultaneous", steps: int = 2000, dim: int = 2, sv_min: float = 1.0,
                 sv_max: float = 1.0, loss: str = "standard", reg: str = "none", gamma: float = 0.0,
                 lr_ratio: float = 1.0, d_steps: int = 1, init_scale: float = 1.0, jacobian_max: int = 200,
                 path_every: int = 1):
        dev = runtime.device
        self.game, self.scheme, self.loss, self.reg, self.gamma = game, scheme, loss, reg, gamma
        self.total_steps, self.d_steps, self.jacobian_max = int(steps), int(d_steps), jacobian_max
        self.lr_scale = {"discriminator": lr_ratio}  # two time scales: the runner scales D's lr(s)
        n = dim if game == "bilinear" else 1
        self.players = {r: model(in_shape=(n,), init_scale=init_scale).to(dev) for r in ROLES}
        if game == "bilinear":
            u, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
            v, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
            s = torch.linspace(sv_min, sv_max, n, dtype=torch.float64)
            self.A = (u @ torch.diag(s) @ v.T).to(dev)
            self.b, self.c = torch.randn(n, dtype=torch.float64, device=dev), torch.randn(n, dtype=torch.float64, device=dev)
            self.eq = (-torch.linalg.solve(self.A.T, self.c), -torch.linalg.solve(self.A, self.b))
        else:
            self.eq = (torch.zeros(1, dtype=torch.float64, device=dev),) * 2
        self.grad_evals = 0
        self._previous: list[Tensor] | None = None  # optimistic: F(z_{t-1})
        self.planar = 2 * n == 2 and path_every > 0  # Dirac-GAN and bilinear with dim=1 live in a plane
        self.path_every, self.step_count = path_every, 0
        self.path: list[list[Tensor]] = [[p.z.detach().clone() for p in self.players.values()]]

    @staticmethod
    def check(root: DictConfig) -> list[str]:
        cfg, problems = root.task, []
        for key, allowed in (("game", GAMES), ("scheme", SCHEMES), ("loss", LOSSES), ("reg", REGS)):
            if cfg[key] not in allowed:
                problems.append(f"task.{key}={cfg[key]!r}: allowed: {', '.join(allowed)}")
        for key in ("lr_ratio", "steps", "d_steps", "dim", "sv_min"):
            if not cfg[key] > 0:
                problems.append(f"task.{key}={cfg[key]}: must be > 0")
        if cfg.sv_max < cfg.sv_min or cfg.gamma < 0:
            problems.append(f"task.sv_max={cfg.sv_max}, task.gamma={cfg.gamma}: need sv_max >= sv_min and gamma >= 0")
        if cfg.game == "bilinear" and (cfg.loss != "standard" or cfg.reg != "none"):
            problems.append(f"task.loss={cfg.loss} task.reg={cfg.reg}: the bilinear game has no GAN loss "
                            f"or penalty; use task.game=dirac")
        return problems

    def models(self) -> Mapping[str, nn.Module]:
        return self.players

    # ---- the game -------------------------------------------------------------------------
    def losses(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(L_G, L_D) at z = (x, y), each minimised by its own player."""
        if self.game == "bilinear":
            f = x @ self.A @ y + self.b @ x + self.c @ y
            return f, -f
        d_fake, d_real = y * x, y * 0.0  # D(x) = psi x on the fake sample theta and the real one at 0
        if self.loss == "wgan":
            loss_d, loss_g = (d_fake - d_real).sum(), -d_fake.sum()
        else:
            loss_d = (F.softplus(-d_real) + F.softplus(d_fake)).sum()
            loss_g = -F.softplus(d_fake).sum() if self.loss == "standard" else F.softplus(-d_fake).sum()
        if self.reg != "none":  # dD/dx = psi at real (R1) and fake (R2) samples alike
            loss_d = loss_d + self.gamma / 2 * (y ** 2).sum()
        return loss_g, loss_d

    def field_at(self, x: Tensor, y: Tensor, create_graph: bool = False) -> list[Tensor]:
        """F(z) = (dL_G/dx, dL_D/dy)."""
        loss_g, loss_d = self.losses(x, y)
        return [torch.autograd.grad(loss_g, x, create_graph=create_graph, retain_graph=True)[0],
                torch.autograd.grad(loss_d, y, create_graph=create_graph)[0]]

    def field(self) -> list[Tensor]:
        """One evaluation of the vector field at the players' current point (counted)."""
        self.grad_evals += 1
        return self.field_at(self.players["generator"].z, self.players["discriminator"].z)

    def jacobian(self) -> Tensor:
        """Jacobian of the update field v = -F at the current point, exact (autograd), z = (x, y):
        as in Mescheder et al., all eigenvalues with negative real part = locally attracting."""
        x0, y0 = (p.z.detach() for p in self.players.values())
        n = len(x0)

        def f(z: Tensor) -> Tensor:
            return -torch.cat(self.field_at(z[:n], z[n:], create_graph=True))

        return torch.autograd.functional.jacobian(f, torch.cat([x0, y0]))

    def _step(self, opt: Mapping[str, OptimizerSet], grads: list[Tensor], roles=ROLES, measure=False) -> dict:
        stats = {}
        for role, g in zip(ROLES, grads):
            if role in roles:
                self.players[role].z.grad = g  # autograd.grad returns fresh tensors: no copy needed
                stats[role] = opt[role].step(measure)
        return stats

    # ---- one step of the selected scheme --------------------------------------------------
    def train_step(self, opt: Mapping[str, OptimizerSet], measure: bool) -> dict[str, Tensor | float]:
        for _ in range(1, self.d_steps):  # extra discriminator steps before each joint update
            self._step(opt, self.field(), roles=("discriminator",))
        if measure:
            z0 = [p.z.detach().clone() for p in self.players.values()]
            with torch.no_grad():
                loss_g, loss_d = self.losses(*(p.z for p in self.players.values()))
        if self.scheme == "simultaneous":
            g = self.field()
            stats = self._step(opt, g, measure=measure)
        elif self.scheme == "alternating":
            g = self.field()
            stats = self._step(opt, g, roles=("discriminator",), measure=measure)
            stats |= self._step(opt, self.field(), roles=("generator",), measure=measure)
        elif self.scheme == "extragradient":
            g = self.field()
            saved = [copy.deepcopy(o.state_dict()) for o in opt.values()]
            params = [p.z.detach().clone() for p in self.players.values()]
            self._step(opt, g)  # trial step to z'
            g_half = self.field()
            with torch.no_grad():
                for p, v in zip(self.players.values(), params):
                    p.z.copy_(v)
            for o, s in zip(opt.values(), saved):
                o.load_state_dict(s)
            stats = self._step(opt, g_half, measure=measure)
        else:  # optimistic
            g = self.field()
            prev = self._previous or g
            self._previous = [t.detach() for t in g]
            stats = self._step(opt, [2 * a - b for a, b in zip(g, prev)], measure=measure)
        self.step_count += 1
        if self.planar and self.step_count % self.path_every == 0 and len(self.path) < 20000:  # for the picture
            self.path.append([p.z.detach().clone() for p in self.players.values()])
        if not measure:
            return {}
        field_norm = torch.linalg.vector_norm(torch.cat(g))  # F at z_t, the point this step started from
        dist = torch.linalg.vector_norm(torch.cat([a - e for a, e in zip(z0, self.eq)]))
        out = {"gan/loss_g": loss_g, "gan/loss_d": loss_d, "gan/field_norm": field_norm, "gan/dist_to_eq": dist,
               "train/grad_evals": float(self.grad_evals),
               **{f"train/update_norm_{role}": s["update_norm"] for role, s in stats.items()}}
        if sum(t.numel() for t in z0) <= self.jacobian_max:
            eig = torch.linalg.eigvals(self.jacobian())
            out |= {"gan/jac_max_real": eig.real.max(), "gan/jac_max_abs": eig.abs().max()}
        return out

    def evaluate(self) -> dict[str, Tensor]:
        return {}

    def figures(self, run_dir: Path) -> dict[str, Path]:
        """The trajectory in the phase plane (first coordinate of each player)."""
        if not self.planar:
            return {}
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        xs, ys = torch.stack([torch.cat(p) for p in self.path]).cpu().T.tolist()
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot(xs, ys, lw=0.8)
        ax.scatter([xs[0]], [ys[0]], c="green", label="start", zorder=3)
        ax.scatter([float(self.eq[0][0])], [float(self.eq[1][0])], c="red", marker="*", s=120, label="equilibrium", zorder=3)
        ax.set_xlabel("generator" + (r" $\theta$" if self.game == "dirac" else " x"))
        ax.set_ylabel("discriminator" + (r" $\psi$" if self.game == "dirac" else " y"))
        ax.set_title(f"{self.game} {self.scheme}", fontsize=9)
        ax.legend(fontsize=8)
        path = run_dir / "phase.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        return {"gan/phase": path}
