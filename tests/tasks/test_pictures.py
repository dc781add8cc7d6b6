"""The pictures drawn on a figure kept open between runs and saved by tasks/shared/png.py
(tasks/gan/figures.py's phase plane, tasks/gridworld/picture.py's policy) have the pixels of a
new figure saved by plain `savefig(bbox_inches="tight")`, run after run in one process with
other data each time, so an artist left from an earlier run would show. Pixels, not bytes: the
PNG's compression level is not savefig's default."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from tasks.gan import figures
from tasks.gan.games import Bilinear
from tasks.gridworld import picture
from tasks.shared import png


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"))


def saved_new(fig, path: Path, dpi: float = 120) -> np.ndarray:
    """The reference: a new figure, saved as the tasks saved it before tasks/shared/png.py."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return pixels(path)


def assert_same_pixels(kept: list[np.ndarray], new: list[np.ndarray]) -> None:
    for k, (a, b) in enumerate(zip(kept, new, strict=True)):
        assert a.shape == b.shape and (a == b).all(), (k, a.shape, b.shape)
    assert len({a.tobytes() for a in kept}) == len(kept)  # each run's data shows


def spirals(n: int) -> list[torch.Tensor]:
    t = torch.arange(300, dtype=torch.float64) * 0.05
    return [torch.stack([(0.5 + k) * torch.exp(0.1 * k * t) * torch.cos(3 * t) + k,
                         (1 + k) * torch.exp(0.1 * k * t) * torch.sin(3 * t)], 1) * 10.0 ** (2 * k) for k in range(n)]


def bilinear(eq: tuple[float, float]) -> Bilinear:
    game = Bilinear.__new__(Bilinear)  # only what the picture reads: a seed's equilibrium
    game.eq = (torch.tensor([eq[0]]), torch.tensor([eq[1]]))
    return game


def test_the_phase_plane_redrawn_has_a_new_figures_pixels(tmp_path):
    runs = list(zip([bilinear((0.5, -1.0)), bilinear((-3.0, 2.0)), bilinear((0.0, 0.0))], spirals(3), strict=True))
    figures._planes.clear()
    kept = [pixels(figures.phase_plane(game, "alternating", path, tmp_path / f"kept{k}.png"))
            for k, (game, path) in enumerate(runs)]
    assert len(figures._planes) == 1  # one figure, redrawn, whatever the equilibrium
    new = []
    for k, (game, path) in enumerate(runs):
        figures._planes.clear()
        new.append(saved_new(figures._plane(game, "alternating", path), tmp_path / f"new{k}.png"))
    assert_same_pixels(kept, new)


@pytest.mark.parametrize("walls", [False, True])
def test_the_policy_picture_redrawn_has_a_new_figures_pixels(tmp_path, walls):
    rows, cols = 4, 5
    wall = np.zeros(rows * cols, dtype=bool)
    wall[7] = walls
    goal, end = np.zeros_like(wall), np.zeros_like(wall)
    goal[-1], end[5] = True, True
    g = np.random.default_rng(0)
    runs = [(np.ma.masked_array(g.normal(size=(rows, cols)) * 10 ** k, wall.reshape(rows, cols)),
             g.normal(size=(rows * cols, 2)), f"grid pg tau=0\nsubopt {10.0 ** -k:.2e}") for k in range(3)]
    picture._open.clear()
    kept = [pixels(picture.policy(v, a, wall, goal, end, t, tmp_path / f"kept{k}.png")) for k, (v, a, t) in enumerate(runs)]
    assert len(picture._open) == 1
    new = []
    for k, (v, a, t) in enumerate(runs):
        picture._open.clear()
        new.append(saved_new(picture._figure(v, a, wall, goal, end, t), tmp_path / f"new{k}.png"))
    assert_same_pixels(kept, new)



def test_a_figure_with_a_layout_engine_is_saved_as_savefig_saves_it(tmp_path):
    def constrained():
        fig, ax = plt.subplots(figsize=(3, 2), layout="constrained")
        ax.plot([0, 1e5], [0, 1])
        ax.set_title("constrained")
        return fig

    kept = pixels(png.save_tight(constrained(), tmp_path / "kept.png", dpi=100))
    assert_same_pixels([kept], [saved_new(constrained(), tmp_path / "new.png", dpi=100)])


@pytest.mark.parametrize("task, overrides, names", [
    ("gan", ["task.game=mog", "model=mlp", "task.steps=40", "eval_every=20", "model.hidden=[16,16]"],
     ["samples.png", "samples_progress.png"]),
    ("diffusion", ["task.steps=[4,8,16]"], ["samples.png", "error_vs_nfe.png"]),
])
def test_new_figures_saved_tight_have_plain_savefigs_pixels(task, overrides, names, tmp_path, capsys, monkeypatch):
    """The mog GAN's and diffusion's pictures (new figures each run) through png.save_tight, against
    the same run with save_tight swapped for plain savefig(bbox_inches="tight")."""
    from tests.helpers import run_main

    def plain(fig, path, dpi):
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
        return path

    got = {}
    for how in ("tight", "plain"):
        with monkeypatch.context() as m:
            if how == "plain":
                for module in ("tasks.gan.figures", "tasks.diffusion.task"):
                    m.setattr(f"{module}.save_tight", plain)
            code, out = run_main(capsys, f"task={task}", *overrides, "logger=none", f"hydra.run.dir={tmp_path / how}")
        assert code == 0, out
        got[how] = [pixels(tmp_path / how / name) for name in names]
    for a, b in zip(got["tight"], got["plain"], strict=True):
        assert a.shape == b.shape and (a == b).all()
