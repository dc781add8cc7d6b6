"""Min-max games trained by gradient descent-ascent (GDA), with the game's convergence measured.

    runner task=gan                                                # bilinear game, simultaneous GDA
    runner task=gan task.scheme=extragradient                      # converges where GDA spirals out
    runner task=gan task.game=dirac task.reg=r1 task.gamma=0.3     # Dirac-GAN with a gradient penalty
    runner task=gan task.scheme=optimistic optim=adam              # Optimistic Adam
    runner task=gan task.game=mog model=mlp optim=adam             # a real GAN on a ring of 8 Gaussians

Both players descend their own loss (tasks/gan/games.py defines the games): the generator minimises
L_G, the discriminator L_D (zero-sum games: L_D = -L_G, ascent written as descent, so every
optimizer works). The game's vector field is F(z) = (dL_G/d theta_G, dL_D/d theta_D) over all
parameters z of both players.

Schemes (`task.scheme`), each with any `optim` applying the update:
- simultaneous: both players step from F(z_t).
- alternating:  the discriminator steps first, the generator steps from the updated point.
- extragradient: a trial step to z' with F(z_t), then the real step from z_t with F(z'): the
  parameters *and the optimizer state* are restored after the trial step (with Adam: Extra-Adam).
- optimistic: the step uses 2 F(z_t) - F(z_{t-1}) in place of F(z_t) (optimistic GDA; with Adam
  fed these gradients: Optimistic Adam).
`train/grad_evals` counts evaluations of F (extragradient: two per step).

gan/jac_max_real and gan/jac_max_abs are the largest real part and modulus of the eigenvalues of
the Jacobian of v = -F (negative real parts everywhere: locally attracting; zero: cycling), every
`jacobian_every` steps: exact up to `jacobian_max` parameters, beyond that estimated by ARPACK
(Arnoldi) from vector-Jacobian products (the eigenvalues of J and J^T are the same), at a fixed
minibatch for `mog`. Primary convergence metric: gan/dist_to_eq where the equilibrium is known
(bilinear, dirac), else gan/field_norm.

`mog` draws everything (real samples, the generator's noise, WGAN-GP's interpolation weights, the
evaluation's noise) from the run's own generator (runner/task/rng.py, saved with the task's state),
never from torch's global one, so a lane of a group (tasks/gan/lanes.py) draws what its single run
draws; with `precision=fp64` its players and samples are float64.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from runner.task.device import Runtime
from runner.task.optim import OptimizerSet, total_norm
from tasks.gan.games import GAMES

SCHEMES, LOSSES, REGS = ("simultaneous", "alternating", "extragradient", "optimistic"), \
    ("standard", "nonsaturating", "wgan", "wgan_gp"), ("none", "r1", "r2")
ROLES = ("generator", "discriminator")
PATH_POINTS = 4096  # points kept for the phase-plane picture
GAME_STATE = ("eval_real", "w2_floor", "snapshots")  # drawn at the start or kept along the way (mog)
log = logging.getLogger(__name__)


class GameGDA:
    lane_safe = ("init_scale", "gamma", "lr_ratio")  # task keys that may differ between lanes (README "Lanes")
    fp64 = True  # the point games compute in float64 always; mog's players and samples in the runtime's dtype

    def __init__(self, runtime: Runtime, model: Callable[..., nn.Module], game: str = "bilinear",
                 scheme: str = "simultaneous", steps: int = 2000, dim: int = 1, sv_min: float = 1.0,
                 sv_max: float = 1.0, loss: str = "standard", reg: str = "none", gamma: float = 0.0,
                 gp_weight: float = 10.0, mixture: str = "ring", std: float | None = None, latent_dim: int = 16,
                 batch_size: int = 256, eval_samples: int = 2500, w2_samples: int = 1000, mode_min: int = 20,
                 lr_ratio: float = 1.0, d_steps: int = 1, init_scale: float = 1.0, jacobian_max: int = 200,
                 jacobian_every: int = 500, jacobian_iters: int = 20, path_every: int = 2):
        self.game = GAMES[game](runtime.device, dim=dim, sv_min=sv_min, sv_max=sv_max, loss=loss, reg=reg,
                                gamma=gamma, gp_weight=gp_weight, mixture=mixture, std=std, latent_dim=latent_dim,
                                batch_size=batch_size, eval_samples=eval_samples, w2_samples=w2_samples,
                                mode_min=mode_min, dtype=runtime.param_dtype)
        self.players = {r: m.to(runtime.device) for r, m in self.game.players(model, init_scale).items()}
        self.params = [p for r in ROLES for p in self.players[r].parameters()]
        self.own = {r: list(self.players[r].parameters()) for r in ROLES}  # each player's parameters
        self.n_params = sum(p.numel() for p in self.params)
        self.scheme, self.total_steps, self.d_steps = scheme, int(steps), int(d_steps)
        self.lr_scale = {"discriminator": lr_ratio}  # two time scales: the runner scales D's lr(s)
        self.primary = "gan/dist_to_eq" if self.game.eq is not None else "gan/field_norm"
        self.jacobian_max, self.jacobian_every, self.jacobian_iters = jacobian_max, jacobian_every, jacobian_iters
        self.grad_evals, self.step_count, self.last_jacobian = 0, 0, -jacobian_every
        self._previous: list[Tensor] | None = None  # optimistic: F(z_{t-1})
        self.eq = torch.cat(self.game.eq) if self.game.eq is not None else None
        # The phase-plane picture of two-parameter games (Dirac-GAN, bilinear with dim=1), in one
        # preallocated buffer rather than a new tensor per step; when full, every other point goes
        # and the spacing doubles, so the whole trajectory stays in the picture.
        self.path_every = path_every if self.game.planar_names and self.n_params == 2 else 0
        self.path = torch.empty(PATH_POINTS if self.path_every else 0, self.n_params, dtype=self.params[0].dtype,
                                device=runtime.device)
        self.path_len = 0
        if self.path_every:
            self._record_point()

    @staticmethod
    def check(root: DictConfig) -> list[str]:
        cfg, problems = root.task, []
        for key, allowed in (("game", tuple(GAMES)), ("scheme", SCHEMES), ("loss", LOSSES), ("reg", REGS),
                             ("mixture", ("ring", "grid"))):
            if cfg[key] not in allowed:
                problems.append(f"task.{key}={cfg[key]!r}: allowed: {', '.join(allowed)}")
        if cfg.sv_max < cfg.sv_min:  # each key's own type and range: declared in conf/task/gan.yaml
            problems.append(f"task.sv_max={cfg.sv_max}, task.sv_min={cfg.sv_min}: need sv_max >= sv_min")
        if cfg.game == "bilinear" and (cfg.loss != "standard" or cfg.reg != "none"):
            problems.append(f"task.loss={cfg.loss} task.reg={cfg.reg}: the bilinear game has no GAN loss "
                            f"or penalty; use task.game=dirac or task.game=mog")
        for key in [k for k in root if k == "optim" or str(k).startswith("optim_")]:
            if root[key].get("create_graph"):  # one player's step would change what the other's graph needs
                problems.append(f"{key}._target_={root[key]._target_}: needs second derivatives (create_graph), "
                                f"which the GDA schemes of task=gan do not provide; pick a first-order optimizer")
        point = root.model._target_.endswith(".Point")
        if point == (cfg.game == "mog"):
            fit = "model=mlp (MLP generator and discriminator)" if cfg.game == "mog" else "model=point"
            problems.append(f"model={root.model._target_.rsplit('.', 1)[-1]}: does not fit task.game={cfg.game}; "
                            f"use {fit}")
        return problems

    @staticmethod
    def lane_refusal(root: DictConfig) -> str | None:
        """Every game, scheme and setting runs as lanes (tasks/gan/lanes.py; what is not batched, the
        Jacobian's eigenvalues of MLP players or by ARPACK and mog's W2, runs lane by lane there)."""
        return None

    @staticmethod
    def lanes(tasks: list[GameGDA], sizes: Mapping[str, list[int]]):
        from tasks.gan.lanes import GameLanes

        return GameLanes(tasks, sizes)

    def models(self) -> Mapping[str, nn.Module]:
        return self.players

    def state_dict(self) -> dict:
        """What a checkpoint needs beyond the players and optimizers (resume continues exactly)."""
        return {"grad_evals": self.grad_evals, "step_count": self.step_count, "last_jacobian": self.last_jacobian,
                "previous": self._previous, "path": self.path[:self.path_len].clone(), "path_every": self.path_every,
                "game": {k: getattr(self.game, k) for k in GAME_STATE if hasattr(self.game, k)},
                "rng": self.game.gen.get_state() if hasattr(self.game, "gen") else None}  # mog's own stream

    def load_state_dict(self, state: Mapping) -> None:
        self.grad_evals, self.step_count = state["grad_evals"], state["step_count"]
        self.last_jacobian, self._previous = state["last_jacobian"], state["previous"]
        self.path_len, self.path_every = len(state["path"]), state["path_every"]
        self.path[:self.path_len] = state["path"]
        for k, v in state["game"].items():
            setattr(self.game, k, v)
        if state.get("rng") is not None:
            self.game.gen.set_state(state["rng"])

    # ---- the vector field and its Jacobian ------------------------------------------------
    def field(self, batch=None, create_graph: bool = False) -> tuple[list[Tensor], tuple[Tensor, Tensor]]:
        """F(z) at the players' current point, one tensor per parameter (generator's first), and the
        two losses there."""
        losses = self.game.losses(self.players, batch)
        grads = [*torch.autograd.grad(losses[0], self.own["generator"], retain_graph=True, create_graph=create_graph),
                 *torch.autograd.grad(losses[1], self.own["discriminator"], create_graph=create_graph)]
        return grads, losses

    def evaluate_field(self) -> tuple[list[Tensor], tuple[Tensor, Tensor]]:
        """One counted evaluation of F on a fresh minibatch, with the two losses there."""
        self.grad_evals += 1
        return self.field(self.game.sample())

    def jacobian_vjp(self) -> Callable[[Tensor], Tensor]:
        """u -> J^T u for the Jacobian J of v = -F at the current point (fixed minibatch)."""
        v = [-g for g in self.field(self.game.sample(), create_graph=True)[0]]

        def vjp(u: Tensor) -> Tensor:  # u: (..., n) flat; batched over leading dims
            parts = list(u.split([p.numel() for p in self.params], dim=-1))
            outs = [q.reshape(*u.shape[:-1], *p.shape) for q, p in zip(parts, self.params)]
            live = [i for i, t in enumerate(v) if t.requires_grad]  # constant parts of F (a WGAN critic's
            grads = torch.autograd.grad([v[i] for i in live], self.params, [outs[i] for i in live],  # bias) add 0
                                        retain_graph=True, allow_unused=True, is_grads_batched=u.ndim > 1)
            return torch.cat([(g if g is not None else torch.zeros_like(q)).reshape(*u.shape[:-1], -1)
                              for g, q in zip(grads, outs)], -1)
        return vjp

    def jacobian(self) -> Tensor:
        """The dense Jacobian of v = -F (rows: components of v): row i = e_i^T J."""
        p, vjp = self.params[0], self.jacobian_vjp()
        eye = torch.eye(self.n_params, dtype=p.dtype, device=p.device)
        if self.n_params <= 16:  # a loop of products beats vmap's fixed cost on tiny games
            return torch.stack([vjp(e) for e in eye])
        return vjp(eye)

    def jacobian_eigs(self) -> dict[str, float | Tensor]:
        """Largest real part and modulus of J's eigenvalues: exact, or by ARPACK beyond jacobian_max."""
        if self.n_params <= self.jacobian_max:
            eig = torch.linalg.eigvals(self.jacobian())
            return {"gan/jac_max_real": eig.real.max(), "gan/jac_max_abs": eig.abs().max()}
        from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigs

        vjp, p = self.jacobian_vjp(), self.params[0]
        op = LinearOperator((self.n_params,) * 2, dtype=np.float64, matvec=lambda u: vjp(
            torch.as_tensor(np.ravel(u), dtype=p.dtype, device=p.device)).double().cpu().numpy())
        # ARPACK's own random start vector comes from a state kept across calls in the process, so a
        # run's estimate would depend on the runs before it (a sweep's earlier jobs, the other lanes)
        v0 = np.random.default_rng(0).standard_normal(self.n_params)
        out = {}
        for key, which in (("gan/jac_max_real", "LR"), ("gan/jac_max_abs", "LM")):
            try:
                vals = eigs(op, k=1, which=which, v0=v0, maxiter=self.jacobian_iters, tol=1e-3,
                            return_eigenvectors=False)
            except ArpackNoConvergence as e:  # leave the value out rather than log an unconverged one
                log.warning("ARPACK: %s not converged in %d restarts at step %d; raise task.jacobian_iters",
                            key, self.jacobian_iters, self.step_count)
                vals = e.eigenvalues
            if len(vals):
                out[key] = float(vals.real.max() if which == "LR" else np.abs(vals).max())
        return out

    def _step(self, opt: Mapping[str, OptimizerSet], grads: list[Tensor], roles=ROLES, measure=False) -> dict:
        for p, g in zip(self.params, grads):
            p.grad = g  # autograd.grad returns fresh tensors: no copy needed
        return {role: opt[role].step(measure) for role in roles}

    @torch.no_grad()
    def _record_point(self) -> None:
        if self.path_len == PATH_POINTS:
            self.path[:PATH_POINTS // 2] = self.path[::2].clone()
            self.path_len, self.path_every = PATH_POINTS // 2, 2 * self.path_every
        torch.cat(self.params, out=self.path[self.path_len])
        self.path_len += 1

    def _point(self) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    # ---- one step of the selected scheme --------------------------------------------------
    def train_step(self, opt: Mapping[str, OptimizerSet], measure: bool) -> dict[str, Tensor | float]:
        for _ in range(1, self.d_steps):  # extra discriminator steps before each joint update
            self._step(opt, self.evaluate_field()[0], roles=("discriminator",))
        out = {}
        if measure and self.step_count - self.last_jacobian >= self.jacobian_every:
            self.last_jacobian = self.step_count
            out |= self.jacobian_eigs()  # at z_t, where this step's F is measured
        if self.scheme == "extragradient":
            z0 = [p.detach().clone() for p in self.params]
        if measure and self.eq is not None:
            dist = torch.linalg.vector_norm(self._point() - self.eq)
        g, (loss_g, loss_d) = self.evaluate_field()  # F(z_t): every scheme starts from it
        if self.scheme == "simultaneous":
            stats = self._step(opt, g, measure=measure)
        elif self.scheme == "alternating":
            stats = self._step(opt, g, roles=("discriminator",), measure=measure)
            stats |= self._step(opt, self.evaluate_field()[0], roles=("generator",), measure=measure)
        elif self.scheme == "extragradient":
            saved = [copy.deepcopy(o.state_dict()) for o in opt.values()]
            self._step(opt, g)  # trial step to z'
            g_half, _ = self.evaluate_field()
            with torch.no_grad():
                torch._foreach_copy_(self.params, z0)
            for o, s in zip(opt.values(), saved):
                o.load_state_dict(s)
            stats = self._step(opt, g_half, measure=measure)
        else:  # optimistic
            prev = self._previous or g
            self._previous = g
            stats = self._step(opt, [2 * a - b for a, b in zip(g, prev)], measure=measure)
        self.step_count += 1
        if self.path_every and self.step_count % self.path_every == 0:
            self._record_point()
        if not measure:
            return {}
        out |= {"gan/loss_g": loss_g.detach(), "gan/loss_d": loss_d.detach(),
                "gan/field_norm": total_norm(g),  # F at z_t, the point this step started from
                "train/grad_evals": float(self.grad_evals),
                **{f"train/update_norm_{role}": s["update_norm"] for role, s in stats.items()}}
        if self.eq is not None:
            out["gan/dist_to_eq"] = dist
        return out

    def evaluate(self) -> dict[str, Tensor | float]:
        for m in self.players.values():
            m.eval()
        out = self.game.evaluate(self.players, self.step_count)
        for m in self.players.values():
            m.train()
        return out

    def figures(self, run_dir: Path) -> dict[str, Path]:
        """Phase-plane trajectory (2-parameter games) or generated against real samples (mog)."""
        import matplotlib

        matplotlib.use("Agg")
        from tasks.gan.figures import phase_plane, samples

        if self.path_len:
            return {"gan/phase": phase_plane(self.game, self.scheme, self.path[:self.path_len], run_dir / "phase.png")}
        if getattr(self.game, "snapshots", None):
            return samples(self.game, self.scheme, run_dir)
        return {}
