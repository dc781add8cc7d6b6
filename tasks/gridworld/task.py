"""Policy optimisation on tabular MDPs (gridworlds), with exact optimality gaps.

    runner task=gridworld                                          # exact softmax PG, FrozenLake 4x4
    runner task=gridworld task.method=npg task.tau=0.01            # entropy-regularised NPG
    runner task=gridworld task.env=FrozenLake8x8-v1 log_every=1
    runner task=gridworld task.env=CliffWalking-v1
    runner task=gridworld task.method=reinforce model=mlp task.batch_size=16 task.horizon=100

The environment's transition model (`env.unwrapped.P`) becomes dense float64 tensors P[s, a, s']
and R[s, a] once. A transition that ends the episode keeps its reward and drops its next state, so
P is sub-stochastic and terminal states need no special case. An exact step solves
(I - gamma P_pi) V = r_pi, and its transpose for the discounted visitation d, with one LU
factorisation, then forms the policy-gradient theorem's gradient for softmax logits

    dV(rho) / dlogit(s, a) = d(s) pi(a|s) A(s, a) / (1 - gamma),

A being the advantage (the soft one, Q - tau log pi - V, when tau > 0). `npg` steps along
A / (1 - gamma), the natural gradient of tabular softmax (Kakade 2001; with entropy, Cen et al.
2022). `reinforce` samples episodes through `step()`. The selected `optim` applies the direction
(`sgd` gives the plain method). Metrics at step t describe the policy that step started from.
Primary metric: rl/subopt = V*(rho) - V^pi(rho), V* from value iteration to machine precision.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import gymnasium
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from runner.task.device import Runtime
from runner.task.optim import OptimizerSet
import tasks.gridworld.env  # noqa: F401 - registers runner/GridWorld-v0

METHODS, INITS, STARTS, BASELINES = ("pg", "npg", "reinforce"), ("uniform", "random", "bad"), ("env", "uniform"), ("none", "mean")


def cell_kinds(env: gymnasium.Env) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(wall, goal, end) masks over the states, for the picture: walls are cells that no move
    enters and no episode starts in (CliffWalking's cliff too: stepping on it sends back to the
    start), their V^pi means nothing; among the cells whose entry ends the episode, those entered
    with the highest reward are goals, the others (FrozenLake's holes) only end it."""
    S = env.observation_space.n
    entered, entry = np.zeros(S, dtype=bool), np.full(S, -np.inf)
    for s in range(S):
        for outcomes in env.P[s].values():
            for p, nxt, reward, done in outcomes:
                if p > 0 and nxt != s:
                    entered[nxt] = True
                    if done:
                        entry[nxt] = max(entry[nxt], reward)
    ends = np.isfinite(entry)
    goal = ends & (entry == entry[ends].max()) if ends.any() else ends
    return ~entered & (np.asarray(env.initial_state_distrib) == 0), goal, ends & ~goal


@dataclass
class MDP:
    P: Tensor  # S x A x S transition probabilities, sub-stochastic where episodes end
    R: Tensor  # S x A expected reward
    rho: Tensor  # initial-state distribution
    gamma: float
    shape: tuple[int, int]  # grid rows, cols (state s is row s // cols, column s % cols)


def make_env(env: str, env_kwargs: Mapping | None) -> gymnasium.Env:
    return gymnasium.make(env, **(env_kwargs or {})).unwrapped  # our own horizon, no TimeLimit


def tabular_model(env: gymnasium.Env, gamma: float, rho: str, device: torch.device) -> MDP:
    S, A = env.observation_space.n, env.action_space.n
    P, R = np.zeros((S, A, S)), np.zeros((S, A))
    for s in range(S):
        for a in range(A):
            for p, nxt, reward, done in env.P[s][a]:
                R[s, a] += p * reward
                if not done:
                    P[s, a, nxt] += p  # +=: one P[s][a] list can name the same next state twice
    start = np.asarray(env.initial_state_distrib, dtype=float) if rho == "env" else np.full(S, 1.0 / S)
    shape = tuple(getattr(env, "shape", None) or (env.nrow, env.ncol))
    as_t = lambda x: torch.as_tensor(x, dtype=torch.float64, device=device)  # noqa: E731
    return MDP(as_t(P), as_t(R), as_t(start), gamma, shape)


def bellman_matrix(m: MDP, pi: Tensor) -> Tensor:
    """I - gamma P_pi, the matrix of the policy's Bellman equation."""
    eye = torch.eye(len(m.rho), dtype=m.P.dtype, device=m.P.device)
    return eye - m.gamma * torch.einsum("sa,sat->st", pi, m.P)


def state_values(m: MDP, pi: Tensor, r_pi: Tensor) -> Tensor:
    """V solving (I - gamma P_pi) V = r_pi for each column of r_pi."""
    return torch.linalg.solve(bellman_matrix(m, pi), r_pi)


@dataclass
class Evaluation:
    V: Tensor  # regularised value V_tau (= V when tau = 0)
    V_plain: Tensor  # unregularised value: the expected discounted return
    adv: Tensor  # soft advantage Q_tau - tau log pi - V_tau
    d: Tensor  # discounted visitation from rho; sums to less than 1 where episodes end
    pi: Tensor
    entropy: Tensor  # per state


def evaluate_policy(m: MDP, logits: Tensor, tau: float) -> Evaluation:
    """Exact values, advantages and visitation of softmax(logits), one LU for all solves."""
    pi, log_pi = logits.softmax(1), logits.log_softmax(1)
    entropy = -(pi * log_pi).sum(1)
    r_plain = (pi * m.R).sum(1)
    lu, piv = torch.linalg.lu_factor(bellman_matrix(m, pi))
    V, V_plain = torch.linalg.lu_solve(lu, piv, torch.stack([r_plain + tau * entropy, r_plain], 1)).unbind(1)
    d = (1 - m.gamma) * torch.linalg.lu_solve(lu, piv, m.rho[:, None], adjoint=True)[:, 0]
    # P V as a product and a sum over s' rather than a matmul: the same rounding when mapped over lanes
    # (tasks/gridworld/lanes.py), where a batched matmul sums in another order
    Q = m.R + m.gamma * (m.P * V).sum(2)
    return Evaluation(V, V_plain, Q - tau * log_pi - V[:, None], d, pi, entropy)


def optimal_values(m: MDP, tau: float, tol: float = 1e-15, max_iter: int = 10**6) -> Tensor:
    """V* (V*_tau when tau > 0) by (soft) value iteration until the values stop moving, then
    polished by exactly evaluating the (soft-)greedy policy, which is optimal at that point."""
    V = torch.zeros_like(m.rho)
    for i in range(max_iter):
        Q = m.R + m.gamma * m.P @ V
        new = Q.amax(1) if tau == 0 else tau * torch.logsumexp(Q / tau, 1)
        done = i % 32 == 0 and float((new - V).abs().max()) <= tol * (1 + float(new.abs().max()))
        V = new
        if done:
            break
    Q = m.R + m.gamma * m.P @ V
    if tau == 0:
        pi = F.one_hot(Q.argmax(1), Q.shape[1]).to(Q.dtype)
        return state_values(m, pi, (pi * m.R).sum(1))
    return evaluate_policy(m, Q / tau, tau).V


class TabularSoftmax(nn.Module):
    """One logit per (state, action); one-hot state rows select them."""

    def __init__(self, in_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(in_shape[0], num_classes))

    def forward(self, states: Tensor) -> Tensor:
        return states @ self.logits


class PolicyOptimization:
    primary = "rl/subopt"
    fp64 = True  # model, policy and values are float64 whatever the precision
    lane_safe = ("gamma", "tau", "init_scale")  # task keys that may differ between lanes (README "Lanes")

    def __init__(self, runtime: Runtime, model: Callable[..., nn.Module], env: str = "FrozenLake-v1",
                 env_kwargs: Mapping | None = None, gamma: float = 0.99, rho: str = "env", method: str = "pg",
                 tau: float = 0.0, init: str = "uniform", init_scale: float = 1.0, steps: int = 1000,
                 batch_size: int | None = None, horizon: int | None = None, baseline: str | None = None):
        dev = runtime.device
        self.env_name, self.env = env, make_env(env, env_kwargs)
        self.mdp = tabular_model(self.env, gamma, rho, dev)
        self.method, self.tau, self.total_steps = method, tau, int(steps)
        self.batch_size, self.horizon, self.baseline = batch_size or 16, horizon or 100, baseline or "mean"
        S, A = self.mdp.R.shape
        self.states = torch.eye(S, dtype=torch.float64, device=dev)  # one-hot encoding of every state
        self.policy = model(in_shape=(S,), num_classes=A).to(device=dev, dtype=torch.float64)
        self.v_star = optimal_values(self.mdp, tau)
        self._initialise(init, init_scale)
        self.rng = np.random.default_rng(torch.initial_seed())
        self.env.reset(seed=int(self.rng.integers(2**31)))

    @staticmethod
    def check(root: DictConfig) -> list[str]:
        cfg, problems = root.task, []
        for key, allowed in (("method", METHODS), ("init", INITS), ("rho", STARTS)):
            if cfg[key] not in allowed:
                problems.append(f"task.{key}={cfg[key]!r}: allowed: {', '.join(allowed)}")
        # each key's own type and range (gamma, tau, steps, ...): declared in conf/task/gridworld.yaml
        sampled = {k: cfg.get(k) for k in ("batch_size", "horizon", "baseline") if cfg.get(k) is not None}
        if cfg.method != "reinforce" and sampled:
            problems += [f"task.{k}={v}: only for sampled gradients (task.method=reinforce); "
                         f"task.method={cfg.method} is exact, remove it" for k, v in sampled.items()]
        if sampled.get("baseline") not in (None, *BASELINES):
            problems.append(f"task.baseline={sampled['baseline']!r}: allowed: {', '.join(BASELINES)}")
        tabular = root.model._target_ == f"{__name__}.TabularSoftmax"
        if not tabular and (cfg.method == "npg" or cfg.init != "uniform"):
            problems.append(f"task.method={cfg.method} task.init={cfg.init}: npg and the random/bad "
                            f"initialisations are defined for model=tabular")
        kwargs = cfg.get("env_kwargs")  # may be removed (~task.env_kwargs): the constructor's default is None
        try:
            make_env(cfg.env, OmegaConf.to_container(kwargs) if kwargs else None)
        except Exception as e:  # noqa: BLE001 - gymnasium's own message says what is wrong
            hint = ""
            if isinstance(e, KeyError) and "map_name" in (kwargs or {}):
                from gymnasium.envs.toy_text.frozen_lake import MAPS

                hint = f"; maps: {', '.join(MAPS)}"
            problems.append(f"task.env={cfg.env} task.env_kwargs={kwargs}: {type(e).__name__}: {e}{hint}")
        return problems

    @staticmethod
    def lane_refusal(root: DictConfig) -> str | None:
        """Why this config's jobs cannot run as lanes (tasks/gridworld/lanes.py), or None."""
        if root.model._target_ != f"{__name__}.TabularSoftmax":
            return f"model={root.model._target_.rsplit('.', 1)[-1]}: only model=tabular is batched over lanes (yet)"
        return None

    @staticmethod
    def lanes(tasks: list[PolicyOptimization], sizes: Mapping[str, list[int]]):
        from tasks.gridworld.lanes import PolicyLanes

        return PolicyLanes(tasks, sizes, evaluate_policy)

    def _initialise(self, init: str, scale: float) -> None:
        with torch.no_grad():
            if isinstance(self.policy, TabularSoftmax):
                logits = self.policy.logits
                if init == "random":
                    logits.normal_(0.0, scale)
                elif init == "bad":  # near-deterministic on the worst action: a hard start for softmax PG
                    q_star = self.mdp.R + self.mdp.gamma * self.mdp.P @ self.v_star
                    logits.copy_(scale * F.one_hot(q_star.argmin(1), logits.shape[1]))
                else:
                    logits.zero_()
            elif init == "uniform":  # a network: zero its last layer, so every state starts uniform
                last = [m for m in self.policy.modules() if isinstance(m, nn.Linear)][-1]
                last.weight.zero_()
                last.bias.zero_()

    def models(self) -> Mapping[str, nn.Module]:
        return {"policy": self.policy}

    def state_dict(self) -> dict:
        """For checkpoints: the episode sampler's generator and the environment's own (slips)."""
        return {"rng": self.rng.bit_generator.state, "env_rng": self.env.np_random.bit_generator.state}

    def load_state_dict(self, state: Mapping) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.env.np_random.bit_generator.state = state["env_rng"]

    def train_step(self, opt: Mapping[str, OptimizerSet], measure: bool) -> dict[str, Tensor | float]:
        opt, m = opt["policy"], self.mdp
        logits = self.policy(self.states)
        out: dict[str, Tensor | float] = {}
        opt.zero_grad()
        if self.method == "reinforce":
            loss, episode_return = self._reinforce_loss(logits)
            loss.backward()
            stats = opt.step(measure)
            ev = evaluate_policy(m, logits.detach(), self.tau) if measure else None
            out = {"rl/episode_return": episode_return, "train/grad_norm": stats.get("grad_norm")}
        else:
            ev = evaluate_policy(m, logits.detach(), self.tau)
            grad = ev.d[:, None] * ev.pi * ev.adv / (1 - m.gamma)  # ascent direction of V_tau(rho)
            if self.method == "npg":
                self.policy.logits.grad = -ev.adv / (1 - m.gamma)  # optimizers descend: negate
            else:
                logits.backward(-grad)
            stats = opt.step(measure)
            out = {"train/grad_norm": torch.linalg.vector_norm(grad)}  # the plain gradient, also for npg
        if not measure:
            return {}
        gap = (self.v_star - ev.V).clamp_min(0)  # V* >= V^pi; below 0 only by float64 rounding (~1e-16)
        return {**out, "rl/subopt": m.rho @ gap, "rl/subopt_inf": gap.max(),
                "rl/return": m.rho @ ev.V_plain, "rl/entropy": ev.d @ ev.entropy / ev.d.sum(),
                "train/update_norm": stats["update_norm"]}

    def _reinforce_loss(self, logits: Tensor) -> tuple[Tensor, float]:
        """Score-function estimate over `batch_size` episodes of at most `horizon` steps, sampled
        through env.step(); the entropy bonus -tau log pi joins the rewards (unbiased for V_tau)."""
        log_pi = logits.log_softmax(1)
        cum = log_pi.detach().exp().cumsum(1).cpu().numpy()
        gamma, paths, returns = self.mdp.gamma, [], []
        rho = self.mdp.rho.cpu().numpy()
        for _ in range(self.batch_size):
            self.env.reset()
            s = self.env.s = int(self.rng.choice(len(rho), p=rho))  # rho, not the env's start: task.rho=uniform
            states, actions, rewards = [], [], []
            for _ in range(self.horizon):
                a = min(int(np.searchsorted(cum[s], self.rng.random() * cum[s, -1])), cum.shape[1] - 1)
                nxt, r, terminated, truncated, _ = self.env.step(a)
                states.append(s), actions.append(a), rewards.append(float(r))
                s = nxt
                if terminated or truncated:
                    break
            paths.append((states, actions, rewards))
            returns.append(sum(rewards))
        width = max(len(p[0]) for p in paths)
        dev = logits.device
        s_idx = torch.zeros(self.batch_size, width, dtype=torch.long, device=dev)
        a_idx, mask = torch.zeros_like(s_idx), torch.zeros(self.batch_size, width, dtype=torch.bool, device=dev)
        rew = torch.zeros(self.batch_size, width, dtype=torch.float64, device=dev)
        for b, (st, ac, rw) in enumerate(paths):
            n = len(st)
            s_idx[b, :n], a_idx[b, :n], mask[b, :n] = torch.tensor(st), torch.tensor(ac), True
            rew[b, :n] = torch.tensor(rw, dtype=torch.float64)
        lp = log_pi[s_idx, a_idx] * mask
        soft_rew = (rew - self.tau * lp.detach()) * mask
        t = torch.arange(width, device=dev)
        discount = gamma ** t.double()
        # reward-to-go from each step t, discounted back to t: sum over k >= t of gamma^(k-t) r_k
        lag = t[:, None] - t[None, :]  # k - t
        to_go = soft_rew @ torch.where(lag >= 0, gamma ** lag.clamp_min(0).double(), 0.0)
        if self.baseline == "mean":  # per time step, over the *other* episodes still running: a baseline
            # that includes the episode's own return is correlated with it and shrinks the gradient by 1 - 1/n
            others = (to_go * mask).sum(0) - to_go
            to_go = to_go - others / (mask.sum(0) - 1).clamp_min(1)
        loss = -(discount * to_go * lp * mask).sum() / self.batch_size
        return loss, float(np.mean(returns))

    def evaluate(self) -> dict[str, Tensor]:
        return {}  # every measured step is already an exact evaluation

    def figures(self, run_dir: Path) -> dict[str, Path]:
        """The learned policy's mean move in each cell, over a heat map of V^pi (policy.png)."""
        from tasks.gridworld import picture

        m = self.mdp
        with torch.no_grad():
            ev = evaluate_policy(m, self.policy(self.states), self.tau)
        rows, cols = m.shape
        pos = torch.stack([torch.arange(len(m.rho)) // cols, torch.arange(len(m.rho)) % cols], 1).to(m.P)
        # Each action's direction is its mean displacement over the states where it moves.
        moves = torch.einsum("sat,tk->sak", m.P, pos) - m.P.sum(2, keepdim=True) * pos[:, None]
        direction = moves.sum(0) / moves.norm(dim=2, keepdim=True).sum(0).clamp_min(1e-12)
        arrows = (ev.pi @ direction).cpu().numpy()  # expected (drow, dcol) per state
        wall, goal, end = cell_kinds(self.env)
        values = np.ma.masked_array(ev.V_plain.reshape(rows, cols).cpu().numpy(), wall.reshape(rows, cols))
        subopt = float(m.rho @ (self.v_star - ev.V))
        title = f"{self.env_name} {self.method} tau={self.tau:g}\nsubopt {subopt:.2e}"
        return {"rl/policy": picture.policy(values, arrows, wall, goal, end, title, run_dir / "policy.png")}
