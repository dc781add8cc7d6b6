"""A configurable gridworld, written as a gymnasium environment with the toy-text transition model.

    gymnasium.make("runner/GridWorld-v0", rows=5, cols=5, walls=[[1, 1], [2, 3]], slip=0.1)

Like FrozenLake and CliffWalking it exposes `P[s][a] = [(prob, next_state, reward, terminated)]`,
`initial_state_distrib`, `nrow` and `ncol`, so the gridworld task reads its exact model the same
way for all three, and samples episodes through `step()`. Actions follow FrozenLake: 0 left,
1 down, 2 right, 3 up. With probability `slip` the move goes to one of the two perpendicular
directions instead (half each). Moving into a wall or off the grid stays in place. Entering the
goal pays `goal_reward` and ends the episode; every other step pays `step_reward`.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium
import numpy as np
from gymnasium import spaces

MOVES = ((0, -1), (1, 0), (0, 1), (-1, 0))  # (drow, dcol) for left, down, right, up


class GridWorldEnv(gymnasium.Env):
    metadata = {"render_modes": []}

    def __init__(self, rows: int = 5, cols: int = 5, walls: Sequence[Sequence[int]] = (),
                 start: Sequence[int] = (0, 0), goal: Sequence[int] | None = None, slip: float = 0.0,
                 goal_reward: float = 1.0, step_reward: float = 0.0):
        if rows < 1 or cols < 1 or rows * cols < 2:
            raise ValueError(f"rows={rows}, cols={cols}: the grid needs at least two cells")
        if not 0 <= slip <= 1:
            raise ValueError(f"slip={slip}: a probability in [0, 1]")
        self.nrow, self.ncol = rows, cols
        goal = tuple(goal) if goal is not None else (rows - 1, cols - 1)
        walls = {tuple(w) for w in walls}
        for name, cell in (("start", tuple(start)), ("goal", goal), *(("wall", w) for w in walls)):
            if not (0 <= cell[0] < rows and 0 <= cell[1] < cols):
                raise ValueError(f"{name} {list(cell)} is outside the {rows}x{cols} grid")
        if tuple(start) in walls or goal in walls or tuple(start) == goal:
            raise ValueError("start and goal must be distinct free cells")
        self.walls, self.goal = walls, goal
        n = rows * cols
        self.observation_space, self.action_space = spaces.Discrete(n), spaces.Discrete(4)
        self.initial_state_distrib = np.zeros(n)
        self.initial_state_distrib[self._index(start)] = 1.0
        self.P = {s: {a: self._outcomes(s, a, slip, goal_reward, step_reward) for a in range(4)} for s in range(n)}
        self.s = self._index(start)

    def _index(self, cell: Sequence[int]) -> int:
        return int(cell[0]) * self.ncol + int(cell[1])

    def _move(self, s: int, a: int) -> int:
        r, c = divmod(s, self.ncol)
        nr, nc = r + MOVES[a][0], c + MOVES[a][1]
        if not (0 <= nr < self.nrow and 0 <= nc < self.ncol) or (nr, nc) in self.walls:
            return s
        return nr * self.ncol + nc

    def _outcomes(self, s: int, a: int, slip: float, goal_reward: float, step_reward: float) -> list:
        if divmod(s, self.ncol) == self.goal or divmod(s, self.ncol) in self.walls:
            return [(1.0, s, 0.0, True)]  # absorbing (the goal ends the episode; walls are never entered)
        out = []
        for direction, p in ((a, 1 - slip), ((a + 1) % 4, slip / 2), ((a - 1) % 4, slip / 2)):
            if p > 0:
                nxt = self._move(s, direction)
                done = divmod(nxt, self.ncol) == self.goal
                out.append((p, nxt, goal_reward if done else step_reward, done))
        return out

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.s = int(self.np_random.choice(len(self.initial_state_distrib), p=self.initial_state_distrib))
        return self.s, {"prob": 1.0}

    def step(self, action: int):
        outcomes = self.P[self.s][int(action)]
        i = int(self.np_random.choice(len(outcomes), p=[o[0] for o in outcomes]))
        p, self.s, reward, terminated = outcomes[i]
        return self.s, reward, terminated, False, {"prob": p}


if "runner/GridWorld-v0" not in gymnasium.registry:
    gymnasium.register(id="runner/GridWorld-v0", entry_point=GridWorldEnv)
