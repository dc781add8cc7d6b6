"""The games as lanes: task.py's GDA schemes for every lane at once.

Each lane starts where its single run starts (the runner builds and seeds each lane's own task:
its players' start and, for the bilinear game, its own A, b, c). The game's losses are written for
leading lane dimensions (tasks/gan/games.py), so one call gives every lane's two losses; the
gradient of their sums is each lane's own field F. The point games' players are each lane's point;
mog's MLP players are LaneNetworks (runner/task/lanes.py: the single run's module on each lane's
parameters under vmap), fed each lane's minibatch, drawn by its own task's game from its own
generator in its single run's order. The schemes are task.py's, step for step: simultaneous,
alternating, extragradient (parameters and optimizer state restored after the trial step) and
optimistic, with `d_steps`, the phase-plane path (which goes back to each lane's task at the end
for its picture) and the Jacobian's eigenvalues: exact and batched over lanes for the point
games; for MLP players, or beyond `jacobian_max` (ARPACK), lane by lane with the lane's own task.
mog's evaluation runs the generators of all lanes at once, then measures each lane's samples with
its own task's game (W2 is an exact transport problem per lane) and keeps them for its pictures.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from runner.task.lanes import LaneModule, LaneNetwork, lane_norms

ROLES = ("generator", "discriminator")
STACKED = ("A", "b", "c", "gamma")  # per-lane numbers of a game (its seed's A, b, c; a lane-safe gamma)


class GameLanes:
    def __init__(self, tasks: Sequence[Any], sizes: Mapping[str, Sequence[int]]):
        first = tasks[0]
        self.tasks, self.scheme, self.d_steps = tasks, first.scheme, first.d_steps
        self.total_steps, self.primary, self.jacobian_every = first.total_steps, first.primary, first.jacobian_every
        # mog's MLP players: one network per role over all lanes; the point games': their points
        self.nets = {r: LaneNetwork([t.players[r] for t in tasks], sizes[r]) for r in ROLES} \
            if first.game.eq is None else None
        self.players = {r: self.nets[r].weights for r in ROLES} if self.nets else \
            {r: LaneModule([t.own[r] for t in tasks], sizes[r]) for r in ROLES}
        self.lane_by_lane = self.nets is not None or first.n_params > first.jacobian_max  # the Jacobian's eigenvalues
        self.ended: set[int] = set()  # lanes that diverged: frozen, measured and pictured no more
        self.game = copy.copy(first.game)
        dtype = first.params[0].dtype
        for key in STACKED:
            if hasattr(first.game, key):
                self.game.__dict__[key] = torch.as_tensor([getattr(t.game, key) for t in tasks], dtype=dtype,
                                                          device=first.params[0].device) \
                    if key == "gamma" else torch.stack([getattr(t.game, key) for t in tasks])
        self.eq = torch.stack([t.eq for t in tasks]) if first.eq is not None else None
        # counters, the optimistic scheme's last field and the path: each task's own (equal counters:
        # lanes start together, from step 0 or from checkpoints of one step)
        self.grad_evals, self.step_count, self.last_jacobian = first.grad_evals, first.step_count, first.last_jacobian
        self._previous: list[Tensor] | None = None if first._previous is None else self._stacked(
            [t._previous for t in tasks], sizes)
        self.path_every, self.path_len = first.path_every, first.path_len
        self.path = torch.empty(first.path.shape[0], len(tasks), first.n_params, dtype=torch.float64)
        self.path[:self.path_len] = torch.stack([t.path[:self.path_len] for t in tasks], 1)

    def models(self) -> Mapping[str, LaneModule]:
        return self.players

    def lane_ended(self, i: int) -> None:
        """Lane i diverged (runner/lanes/loop.py): its single run stopped, so it keeps no later snapshot."""
        self.ended.add(i)

    def _stacked(self, per_lane: Sequence[Sequence[Tensor]], sizes: Mapping[str, Sequence[int]]) -> list[Tensor]:
        """Per-lane tensors laid out as a task's `params` into tensors laid out as `params()`."""
        out, k = [], 0
        for r in ROLES:
            for _ in self.players[r].stacks:
                out += list(torch.stack([lane[k] for lane in per_lane]).split(list(sizes[r])))
                k += 1
        return out

    def _lane_of(self, per_param: Sequence[Tensor], i: int) -> list[Tensor]:
        """Lane i's tensors, laid out as its task's `params`, from tensors laid out as `params()`."""
        out, k = [], 0
        for r in ROLES:
            n = len(list(self.players[r].parameters()))
            out += [t[i].detach().clone() for t in self.players[r].joined(per_param[k:k + n])]
            k += n
        return out

    def params(self) -> list[Tensor]:
        return [p for r in ROLES for p in self.players[r].parameters()]

    def _point(self) -> Tensor:
        """(lanes, n): each lane's z, generator's first, as task.py's `_point`."""
        return torch.cat([v.detach().reshape(v.shape[0], -1) for r in ROLES for v in self.players[r].values()], 1)

    def _sample(self) -> tuple[Tensor, ...] | None:
        """Each lane's minibatch (mog), drawn by its own task's game: (lanes, batch, ...) tensors."""
        if self.nets is None:
            return None
        return tuple(torch.stack(part) for part in zip(*[t.game.sample() for t in self.tasks]))

    def field(self, create_graph: bool = False) -> tuple[list[Tensor], tuple[Tensor, Tensor]]:
        """Every lane's F (one tensor per bucket parameter) and the two losses (one per lane), on
        each lane's fresh minibatch (mog)."""
        if self.nets is not None:
            losses = self.game.losses(self.nets, self._sample())
        else:
            losses = self.game.losses({r: SimpleNamespace(z=self.players[r].values()[0]) for r in ROLES})
        own = {r: list(self.players[r].parameters()) for r in ROLES}
        grads = [*torch.autograd.grad(losses[0].sum(), own["generator"], retain_graph=True, create_graph=create_graph),
                 *torch.autograd.grad(losses[1].sum(), own["discriminator"], create_graph=create_graph)]
        return grads, losses

    def evaluate_field(self) -> tuple[list[Tensor], tuple[Tensor, Tensor]]:
        self.grad_evals += 1
        return self.field()

    def jacobian_eigs(self) -> dict[str, Tensor | list]:
        """Each lane's dense Jacobian of v = -F (row i = e_i^T J, as task.py's), its eigenvalues."""
        if self.lane_by_lane:
            return self._lane_jacobian_eigs()
        v = [-g for g in self.field(create_graph=True)[0]]
        params, n = self.params(), self._point().shape[1]
        flat = self._flat(v)
        rows = []
        for i in range(n):
            grads = torch.autograd.grad(flat[:, i].sum(), params, retain_graph=True, allow_unused=True)
            rows.append(self._flat([g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]))
        eig = torch.linalg.eigvals(torch.stack(rows, 1).transpose(1, 2))
        return {"gan/jac_max_real": eig.real.max(1).values, "gan/jac_max_abs": eig.abs().max(1).values}

    def _lane_jacobian_eigs(self) -> dict[str, Tensor | list]:
        """Lane by lane, each lane's own task.py `jacobian_eigs` at the lane's point (MLP players, or
        ARPACK's estimate: neither is batched over lanes), on a minibatch its own game draws. A value
        ARPACK left out for some lanes is None there (the lane's record leaves it out, as its run's)."""
        per = []
        for i, t in enumerate(self.tasks):
            if i in self.ended:
                per.append({})
                continue
            with torch.no_grad():
                torch._foreach_copy_(t.params, [v for r in ROLES for v in self.players[r].lane(i)])
            t.step_count = self.step_count  # ARPACK's warning names the step
            per.append({k: float(v) for k, v in t.jacobian_eigs().items()})
        keys = sorted({k for lane in per for k in lane})
        return {k: torch.tensor([lane[k] for lane in per], dtype=torch.float64) if all(k in lane for lane in per)
                else [lane.get(k) for lane in per] for k in keys}

    def _flat(self, per_param: Sequence[Tensor]) -> Tensor:
        """(lanes, n) from tensors laid out as `params()` (bucket parameters, role by role)."""
        k, cols = 0, []
        for r in ROLES:
            for stack in self.players[r].stacks:
                m = len(stack.parts)
                cols.append(torch.cat(list(per_param[k:k + m])).reshape(-1, stack.parts[0][0].numel()))
                k += m
        return torch.cat(cols, 1)

    def _step(self, opt, grads: list[Tensor], roles=ROLES, measure=False) -> dict:
        for p, g in zip(self.params(), grads):
            p.grad = g
        return {role: opt[role].step(measure) for role in roles}

    @torch.no_grad()
    def _record_point(self) -> None:
        if self.path_len == len(self.path):
            self.path[:len(self.path) // 2] = self.path[::2].clone()
            self.path_len, self.path_every = len(self.path) // 2, 2 * self.path_every
        self.path[self.path_len] = self._point()
        self.path_len += 1

    def train_step(self, opt: Mapping[str, Any], measure: bool) -> dict[str, Tensor | float]:
        for _ in range(1, self.d_steps):
            self._step(opt, self.evaluate_field()[0], roles=("discriminator",))
        out = {}
        if measure and self.step_count - self.last_jacobian >= self.jacobian_every:
            self.last_jacobian = self.step_count
            out |= self.jacobian_eigs()
        params = self.params()
        if self.scheme == "extragradient":
            z0 = [p.detach().clone() for p in params]
        if measure and self.eq is not None:
            dist = torch.linalg.vector_norm(self._point() - self.eq, dim=1)
        g, (loss_g, loss_d) = self.evaluate_field()
        if self.scheme == "simultaneous":
            stats = self._step(opt, g, measure=measure)
        elif self.scheme == "alternating":
            stats = self._step(opt, g, roles=("discriminator",), measure=measure)
            stats |= self._step(opt, self.evaluate_field()[0], roles=("generator",), measure=measure)
        elif self.scheme == "extragradient":
            saved = [copy.deepcopy(o.state_dict()) for o in opt.values()]
            self._step(opt, g)
            g_half, _ = self.evaluate_field()
            with torch.no_grad():
                torch._foreach_copy_(params, z0)
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
                "gan/field_norm": lane_norms([self._flat(g)]),
                "train/grad_evals": float(self.grad_evals),
                **{f"train/update_norm_{role}": s["update_norm"] for role, s in stats.items()}}
        if self.eq is not None:
            out["gan/dist_to_eq"] = dist
        return out

    @torch.no_grad()
    def evaluate(self) -> dict[str, Tensor | float]:
        """mog: every lane's generator on its own evaluation noise at once, then each lane's samples
        measured by its own game (task.py's `evaluate`, lane by lane past the generator)."""
        if self.nets is None:
            return {}
        for net in self.nets.values():
            net.eval()
        fake = self.nets["generator"](torch.stack([t.game.eval_noise() for t in self.tasks]))
        for net in self.nets.values():
            net.train()
        per = [None if i in self.ended else t.game.measure(f, self.step_count)
               for i, (t, f) in enumerate(zip(self.tasks, fake))]
        keys = next(lane for lane in per if lane is not None)
        return {k: torch.tensor([float(lane[k]) if lane else float("nan") for lane in per], dtype=torch.float64)
                for k in keys}

    def unstack(self) -> None:
        """Each lane's point, counters, last field (optimistic) and phase-plane path back into its own
        task: at the end (its figures) and for a checkpoint (runner/lanes/checkpoints.py)."""
        with torch.no_grad():
            for i, t in enumerate(self.tasks):
                for x, v in zip(t.params, [v for r in ROLES for v in self.players[r].lane(i)]):
                    x.copy_(v)
                t.grad_evals, t.step_count, t.last_jacobian = self.grad_evals, self.step_count, self.last_jacobian
                t.path_len, t.path_every = self.path_len, self.path_every
                t.path[:self.path_len] = self.path[:self.path_len, i]
                t._previous = None if self._previous is None else self._lane_of(self._previous, i)
