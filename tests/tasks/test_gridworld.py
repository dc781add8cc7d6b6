"""The gridworld task (tasks/gridworld/task.py, tasks/gridworld/env.py) against independent references.

- the closed-form policy gradient equals central finite differences and torch autograd of V(rho);
- V* equals the value of policy iteration (tau = 0) and solves the soft Bellman equation (tau > 0);
- the dense model P, R matches transitions sampled through env.step();
- exact PG and NPG never report a negative gap and make progress; entropy-regularised NPG with
  lr 1 (soft policy iteration) reaches machine precision;
- REINFORCE runs with both models, and its gradient is unbiased, with and without the baseline;
- bad configs are stopped by validation naming the key; the command line writes a complete run folder.

Everything is float64 on the CPU:

    pytest tests/tasks/test_gridworld.py
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runner.validation.validate import ConfigError, validate
from tasks.gridworld.task import MDP, cell_kinds, evaluate_policy, make_env, optimal_values, state_values, tabular_model
from tests.helpers import ROOT, build_all, compose_cfg

CPU = torch.device("cpu")
GRID_KWARGS = {"rows": 3, "cols": 4, "walls": [[1, 1]], "slip": 0.2, "step_reward": -0.1}
ENVS = {  # (gymnasium id, keyword arguments of gymnasium.make)
    "frozenlake": ("FrozenLake-v1", {"map_name": "4x4", "is_slippery": True}),
    "cliffwalking": ("CliffWalking-v1", {}),
    "gridworld": ("runner/GridWorld-v0", GRID_KWARGS),
}


def mdp(name: str, gamma: float) -> MDP:
    env, kwargs = ENVS[name]
    return tabular_model(make_env(env, kwargs), gamma, "env", CPU)


def random_logits(m: MDP, seed: int = 0) -> torch.Tensor:
    return torch.randn(m.R.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def exact_gradient(m: MDP, logits: torch.Tensor, tau: float) -> torch.Tensor:
    """The task's closed form: dV_tau(rho) / dlogit(s, a) = d(s) pi(a|s) A(s, a) / (1 - gamma)."""
    ev = evaluate_policy(m, logits, tau)
    return ev.d[:, None] * ev.pi * ev.adv / (1 - m.gamma)


# --- 1. the exact gradient -------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.0, 0.05])
@pytest.mark.parametrize("name", ENVS)
def test_exact_gradient_matches_finite_differences_and_autograd(name, tau):
    m = mdp(name, gamma=0.9)
    logits = random_logits(m)
    exact = exact_gradient(m, logits, tau)
    objective = lambda x: float(m.rho @ evaluate_policy(m, x, tau).V)  # noqa: E731

    h = 1e-6
    fd = torch.zeros_like(logits)
    for s, a in np.ndindex(*logits.shape):
        e = torch.zeros_like(logits)
        e[s, a] = h
        fd[s, a] = (objective(logits + e) - objective(logits - e)) / (2 * h)
    # Central differences carry ~1e-16 |V| / h of rounding: an absolute floor at the gradient's scale.
    scale = float(exact.abs().max())
    assert scale > 0
    torch.testing.assert_close(exact, fd, rtol=1e-6, atol=1e-6 * scale)

    x = logits.clone().requires_grad_()
    (m.rho @ evaluate_policy(m, x, tau).V).backward()
    torch.testing.assert_close(exact, x.grad, rtol=1e-9, atol=1e-12 * scale)


# --- 2. V* -----------------------------------------------------------------------------------


def policy_iteration(m: MDP) -> torch.Tensor:
    """V of the policy that greedy improvement stops at: evaluate exactly, switch only where an
    action is strictly better (so ties cannot make it cycle), until no state changes."""
    S, A = m.R.shape
    action = torch.zeros(S, dtype=torch.long)
    for _ in range(1000):
        pi = F.one_hot(action, A).to(m.R)
        V = state_values(m, pi, (pi * m.R).sum(1))
        Q = m.R + m.gamma * m.P @ V
        better = Q.amax(1) > Q.gather(1, action[:, None])[:, 0] + 1e-12 * (1 + float(Q.abs().max()))
        if not better.any():
            return V
        action = torch.where(better, Q.argmax(1), action)
    raise AssertionError("policy iteration did not stop")


@pytest.mark.parametrize("gamma", [0.9, 0.99])
@pytest.mark.parametrize("name", ENVS)
def test_optimal_values_equal_policy_iteration(name, gamma):
    m = mdp(name, gamma)
    v_star, v_pi = optimal_values(m, 0.0), policy_iteration(m)
    torch.testing.assert_close(v_star, v_pi, rtol=0, atol=1e-12 * (1 + float(v_pi.abs().max())))


@pytest.mark.parametrize("tau", [0.05, 1.0])
@pytest.mark.parametrize("gamma", [0.9, 0.99])
@pytest.mark.parametrize("name", ENVS)
def test_soft_optimal_values_solve_the_soft_bellman_equation(name, gamma, tau):
    m = mdp(name, gamma)
    V = optimal_values(m, tau)
    backup = tau * torch.logsumexp((m.R + m.gamma * m.P @ V) / tau, 1)
    torch.testing.assert_close(V, backup, rtol=0, atol=1e-12 * (1 + float(V.abs().max())))


# --- 3. the dense model against sampled transitions ------------------------------------------

# (state, action) pairs with something to get wrong: slips, walls, ends of episodes.
PAIRS = {
    # 0 left: the slips up and left both hit the wall (one next state named twice in P[0][0]);
    # 14 right: the goal (ends, pays 1) or a slip; 5: a hole (every action ends the episode).
    "frozenlake": [(0, 0), (14, 2), (10, 1), (5, 3)],
    # actions 0 up, 1 right, 2 down, 3 left; 36 right: the cliff (-100, back to 36); 35 down: the goal.
    "cliffwalking": [(36, 1), (36, 0), (35, 2), (24, 3)],
    # 3x4, wall at (1, 1), goal 11: 7 down enters the goal; 1 down bumps into the wall; 10 right the goal.
    "gridworld": [(7, 1), (1, 1), (10, 2), (0, 2), (11, 0)],
}


@pytest.mark.parametrize("name", ENVS)
def test_dense_model_matches_sampled_transitions(name):
    env_id, kwargs = ENVS[name]
    env = make_env(env_id, kwargs)
    m = tabular_model(env, 0.9, "env", CPU)
    env.reset(seed=0)
    n = 3000
    for s, a in PAIRS[name]:
        counts, ended, rewards = np.zeros(len(m.rho)), 0, np.zeros(n)
        for i in range(n):
            env.s = s
            nxt, rewards[i], terminated, truncated, _ = env.step(a)
            assert not truncated  # the unwrapped env: the task keeps its own horizon
            if terminated:
                ended += 1
            else:
                counts[nxt] += 1
        p = np.append(m.P[s, a].numpy(), 1 - float(m.P[s, a].sum()))  # next states, then "ended"
        freq = np.append(counts, ended) / n
        # 5 standard errors of a frequency; outcomes of probability 0 or 1 must never / always happen.
        tol = 5 * np.sqrt(p * (1 - p) / n) + 1e-12
        assert np.all(np.abs(freq - p) <= tol), (name, s, a, freq, p)
        reward_tol = 5 * rewards.std(ddof=1) / math.sqrt(n) + 1e-12
        assert abs(rewards.mean() - float(m.R[s, a])) <= reward_tol, (name, s, a, rewards.mean(), m.R[s, a])


# --- 4. exact methods: the gap never goes negative and shrinks ---------------------------------


def build(*overrides: str):
    """A gridworld task and its optimizers, seeded, on the CPU."""
    torch.manual_seed(0)
    task, opts, _ = build_all(compose_cfg("task=gridworld", "device=cpu", *overrides))
    return task, opts


@pytest.mark.parametrize("overrides", [["task.method=pg"], ["task.method=npg"], ["task.method=npg", "task.tau=0.01"]],
                         ids=["pg", "npg", "npg-tau"])
def test_exact_methods_never_report_a_negative_gap_and_make_progress(overrides):
    task, opts = build("task.steps=300", "optim.lr=1", *overrides)
    m, subopt = task.mdp, []
    for _ in range(task.total_steps):
        # The reported gap is clamped at 0; the raw one must not be below rounding either (V* >= V^pi).
        raw = task.v_star - evaluate_policy(m, task.policy.logits.detach(), task.tau).V
        assert float(raw.min()) >= -1e-12, float(raw.min())
        out = task.train_step(opts, measure=True)
        assert float(out["rl/subopt"]) >= 0 and float(out["rl/subopt_inf"]) >= 0
        assert float(out["rl/subopt_inf"]) >= float(out["rl/subopt"]) - 1e-15  # max over states >= rho-mean
        assert all(math.isfinite(float(v)) for v in out.values()), out
        subopt.append(float(out["rl/subopt"]))
    assert subopt[-1] < subopt[0], subopt[::30]
    if task.method == "npg" and task.tau > 0:
        # lr = (1 - gamma) / tau (= 1 here) makes each step one soft policy iteration: linear rate gamma.
        assert min(subopt) < 1e-10, subopt[::30]


def test_the_default_run_shows_the_o_1_over_t_regime():
    # `runner task=gridworld` as shipped (conf/task/gridworld.yaml: uniform start, lr 30): the gap
    # falls by orders of magnitude within the default 1,000 steps and ends in Mei et al.'s 1/t law
    # (at SGD's own lr 0.1 and FrozenLake's single start state it moved by 0.8%).
    task, opts = build()
    assert task.total_steps == 1000 and opts["policy"].optimizers[0].param_groups[0]["lr"] == 30
    gaps = [float(task.train_step(opts, measure=True)["rl/subopt"]) for _ in range(task.total_steps)]
    assert gaps[-1] < 0.01 * gaps[0], (gaps[0], gaps[-1])
    local_exponent = math.log(gaps[-1] / gaps[499]) / math.log(1000 / 500)  # d log g / d log t over the tail
    assert -1.15 < local_exponent < -0.9, local_exponent


# --- 5. REINFORCE ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tabular", "mlp"])
def test_reinforce_runs_with_finite_metrics(model):
    task, opts = build("task.method=reinforce", f"model={model}", "task.batch_size=8", "task.horizon=50",
                       "optim.lr=0.1", "task.steps=3")
    for _ in range(task.total_steps):
        out = task.train_step(opts, measure=True)
        for key in ("rl/episode_return", "rl/subopt", "rl/return", "rl/entropy", "train/grad_norm"):
            assert math.isfinite(float(out[key])), (key, out)


SMALL_GRID = "+task.env_kwargs={rows:2,cols:3,slip:0.2,step_reward:-0.1}"


@pytest.mark.parametrize("baseline, batch_size, batches, extra", [
    ("none", 64, 50, []),
    ("mean", 64, 50, []),
    # Few episodes per batch: a baseline that includes the episode's own return would shrink the
    # gradient by about 1 - 1/batch_size, here by half. Uniform starts, with the entropy bonus.
    ("mean", 4, 800, ["task.rho=uniform", "task.tau=0.05"]),
])
def test_reinforce_gradient_is_unbiased(baseline, batch_size, batches, extra):
    # gamma 0.9 and 200 steps: truncation drops at most 0.9^200 ~ 1e-9 of the return.
    task, _ = build("task.env=runner/GridWorld-v0", SMALL_GRID, "task.gamma=0.9", "task.method=reinforce",
                    "task.init=random", f"task.baseline={baseline}", f"task.batch_size={batch_size}",
                    "task.horizon=200", *extra)
    logits = task.policy.logits
    exact = exact_gradient(task.mdp, logits.detach(), task.tau)
    samples = []
    for _ in range(batches):
        logits.grad = None
        loss, _ = task._reinforce_loss(task.policy(task.states))
        loss.backward()
        samples.append(-logits.grad.clone())  # the loss is minimised: its gradient is -dV
    samples = torch.stack(samples)
    mean, se = samples.mean(0), samples.std(0) / math.sqrt(batches)
    # 5 standard errors per logit; a logit of a state never acted in is exactly 0 on both sides.
    assert torch.all((mean - exact).abs() <= 5 * se + 1e-12), ((mean - exact) / se, exact)


# --- 6. validation and the command line ----------------------------------------------------------


@pytest.mark.parametrize("overrides, needles", [
    (["+task.env_kwargs.map_name=5x5"], ["task.env_kwargs", "5x5", "4x4, 8x8"]),
    (["task.gamma=1.0"], ["task.gamma=1.0", "(0, 1)"]),
    (["task.gamma=0"], ["task.gamma=0", "(0, 1)"]),
    (["task.batch_size=16"], ["task.batch_size=16", "task.method=reinforce"]),
    (["task.method=sarsa"], ["task.method='sarsa'", "pg, npg, reinforce"]),
    (["task.method=npg", "model=mlp"], ["task.method=npg", "model=tabular"]),
    (["model=cnn"], ["model=cnn", "task=gridworld", "tabular, mlp"]),
    (["task.env=NoSuchEnv-v0"], ["task.env=NoSuchEnv-v0", "NoSuchEnv"]),
])
def test_bad_config_is_stopped_naming_the_key(overrides, needles):
    cfg = compose_cfg("task=gridworld", *overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg, dict(cfg.hydra.runtime.choices))
    assert len(err.value.problems) == 1, err.value.problems
    for needle in needles:
        assert needle in err.value.problems[0], (needle, err.value.problems)


@pytest.mark.parametrize("overrides", [["task.env=CliffWalking-v1"], ["task.env=FrozenLake8x8-v1"],
                                       ["task.env=runner/GridWorld-v0", SMALL_GRID],
                                       ["task.method=reinforce", "model=mlp", "task.batch_size=8"]])
def test_good_configs_pass(overrides):
    cfg = compose_cfg("task=gridworld", *overrides)
    validate(cfg, dict(cfg.hydra.runtime.choices))


def test_command_line_run_writes_summary_and_policy_figure(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "runner", "task=gridworld", "task.steps=200", "optim.lr=1",
                           "logger=none", f"hydra.run.dir={run_dir}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["error"] is None and summary["steps"] == 200
    png = run_dir / "policy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert Path(summary["figures"]["rl/policy"]).resolve() == png.resolve()
    assert summary["convergence"]["conv/metric"] == "rl/subopt"
    assert summary["final"]["rl/subopt"] >= 0


@pytest.mark.parametrize(("env", "kwargs", "walls", "goals", "ends"), [
    ("FrozenLake-v1", {}, [], [15], [5, 7, 11, 12]),  # holes end the episode, the goal pays 1
    ("runner/GridWorld-v0", {"rows": 3, "cols": 4, "walls": [[1, 1], [0, 2]]}, [2, 5], [11], []),
    ("CliffWalking-v1", {}, list(range(37, 47)), [47], []),  # the cliff is never entered: it sends back to the start
])
def test_policy_picture_tells_walls_goals_and_other_ends_apart(env, kwargs, walls, goals, ends):
    wall, goal, end = cell_kinds(make_env(env, kwargs))
    assert (np.flatnonzero(wall).tolist(), np.flatnonzero(goal).tolist(), np.flatnonzero(end).tolist()) == (walls, goals, ends)
