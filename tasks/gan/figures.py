"""Pictures of the GAN task, saved as PNG in the run folder (the runner logs them to wandb):
the trajectory in the phase plane for two-parameter games, and generated against real samples
for the mixture of Gaussians, at the end and at every evaluation (`eval_every` steps), with the
W2 sample sizes stated in the README (`w2_samples` a side; the floor is real against real)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt

from tasks.shared.png import save_tight

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch import Tensor

    from tasks.gan.games import Bilinear, Dirac, Mixture


_planes: dict[tuple, tuple] = {}  # (game, scheme) -> (figure, axes, path line, start, equilibrium), kept open


def phase_plane(game: Bilinear | Dirac, scheme: str, trajectory: Tensor, path: Path) -> Path:
    """phase.png: the trajectory of a two-parameter game's iterates, with its start and equilibrium.
    Drawn on one figure per game and scheme, kept open and redrawn with each run's trajectory and
    equilibrium (a new figure costs over a third more: axes, text, legend; the runs of a sweep in one
    process share it, whatever their seeds), and saved by tasks/shared/png.py; the pixels are a new
    figure's (tests/tasks/test_pictures.py)."""
    return save_tight(_plane(game, scheme, trajectory), path, dpi=120)


def _plane(game: Bilinear | Dirac, scheme: str, trajectory: Tensor) -> Figure:
    """The phase plane's figure holding this trajectory: kept from an earlier run of the same game and
    scheme, its line, start and equilibrium moved (the bilinear game's equilibrium differs between
    seeds), or new."""
    xs, ys = trajectory.cpu().T.tolist()
    eq = [float(e[0]) for e in game.eq]
    key = (type(game).__name__, tuple(game.planar_names), scheme)
    if key in _planes:
        fig, ax, line, start, star = _planes[key]
        line.set_data(xs, ys)
        start.set_offsets([[xs[0], ys[0]]])
        star.set_offsets([eq])
        ax.relim()  # the limits a new figure takes: the line's and both points' (relim skips scatters)
        ax.update_datalim([[xs[0], ys[0]], eq])
        ax.autoscale_view()
        return fig
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    line, = ax.plot(xs, ys, lw=0.8)
    start = ax.scatter([xs[0]], [ys[0]], c="green", label="start", zorder=3)
    star = ax.scatter(*eq, c="red", marker="*", s=120, label="equilibrium", zorder=3)
    ax.set_xlabel(game.planar_names[0])
    ax.set_ylabel(game.planar_names[1])
    ax.set_title(f"{type(game).__name__.lower()} game, {scheme} GDA", fontsize=9)
    ax.legend(fontsize=8)
    _planes[key] = fig, ax, line, start, star
    return fig


def _panel(ax, game: Mixture, snapshot: tuple, title: str) -> None:
    step, fake, m = snapshot
    title += (f"\nmodes {float(m['gan/modes']):.0f}/{len(game.centers)}, hq {float(m['gan/hq']):.2f}\n"
              f"W2 {m['gan/w2']:.2f} (floor {m['gan/w2_floor']:.2f})")
    real = game.eval_real[:len(fake)].cpu()
    ax.scatter(real[:, 0], real[:, 1], s=2, c="0.6", label="real")
    ax.scatter(fake[:, 0], fake[:, 1], s=2, c="tab:blue", alpha=0.6, label="generated")
    c = game.centers.cpu()
    ax.scatter(c[:, 0], c[:, 1], s=30, facecolors="none", edgecolors="red", lw=0.8, label="modes")
    lim = float(c.abs().max()) + 1.5
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    ax.set_title(title, fontsize=7)
    ax.tick_params(labelsize=6)


def samples(game: Mixture, scheme: str, run_dir: Path) -> dict[str, Path]:
    """samples.png: the last evaluation, large; samples_progress.png: up to 8 evaluations over the run."""
    snaps = game.snapshots
    step, fake, _ = snaps[-1]
    fig, ax = plt.subplots(figsize=(5, 5))
    _panel(ax, game, snaps[-1], f"step {step}: {len(fake)} generated vs real, {scheme} GDA")
    ax.legend(fontsize=7, markerscale=3, loc="upper right")
    final = run_dir / "samples.png"
    save_tight(fig, final, dpi=120)
    plt.close(fig)
    picks = sorted({round(i * (len(snaps) - 1) / 7) for i in range(8)}) if len(snaps) > 8 else range(len(snaps))
    cols = min(4, len(picks))
    rows = -(-len(picks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(picks):]:
        ax.axis("off")
    for ax, i in zip(axes.flat, picks):
        _panel(ax, game, snaps[i], f"step {snaps[i][0]}")
    fig.tight_layout()
    progress = run_dir / "samples_progress.png"
    save_tight(fig, progress, dpi=110)
    plt.close(fig)
    return {"gan/samples": final, "gan/samples_progress": progress}
