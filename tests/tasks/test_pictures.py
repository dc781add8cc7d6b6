"""The pictures drawn on a figure kept open between runs (tasks/gan/figures.py's phase plane,
tasks/gridworld/picture.py's policy) are byte for byte those a new figure draws, run after run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.gan import figures
from tasks.gan.games import Bilinear
from tasks.gridworld import picture


def spirals(n: int) -> list[torch.Tensor]:
    t = torch.arange(300, dtype=torch.float64) * 0.05
    return [torch.stack([(0.5 + k) * torch.exp(0.1 * k * t) * torch.cos(3 * t) + k,
                         (1 + k) * torch.exp(0.1 * k * t) * torch.sin(3 * t)], 1) for k in range(n)]


def test_the_phase_plane_redrawn_is_a_new_figures(tmp_path):
    game = Bilinear.__new__(Bilinear)
    game.eq = (torch.tensor([0.5]), torch.tensor([-1.0]))
    kept = []
    for k, path in enumerate(spirals(3)):
        kept.append(figures.phase_plane(game, "alternating", path, tmp_path / f"kept{k}.png").read_bytes())
    for k, path in enumerate(spirals(3)):
        figures._planes.clear()
        assert figures.phase_plane(game, "alternating", path, tmp_path / f"new{k}.png").read_bytes() == kept[k], k
    assert len(set(kept)) == 3


@pytest.mark.parametrize("walls", [False, True])
def test_the_policy_picture_redrawn_is_a_new_figures(tmp_path, walls):
    rows, cols = 4, 5
    wall = np.zeros(rows * cols, dtype=bool)
    wall[7] = walls
    goal, end = np.zeros_like(wall), np.zeros_like(wall)
    goal[-1], end[5] = True, True
    g = np.random.default_rng(0)
    runs = [(np.ma.masked_array(g.normal(size=(rows, cols)) * 10 ** k, wall.reshape(rows, cols)),
             g.normal(size=(rows * cols, 2)), f"grid pg tau=0\nsubopt {10.0 ** -k:.2e}") for k in range(3)]
    kept = [picture.policy(v, a, wall, goal, end, t, tmp_path / f"kept{k}.png").read_bytes()
            for k, (v, a, t) in enumerate(runs)]
    for k, (v, a, t) in enumerate(runs):
        picture._open.clear()
        assert picture.policy(v, a, wall, goal, end, t, tmp_path / f"new{k}.png").read_bytes() == kept[k], k
    assert len(set(kept)) == 3
