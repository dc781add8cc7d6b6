"""policy.png: a gridworld policy's mean move in each cell over a heat map of V^pi, drawn on one
figure per grid layout that is kept open and redrawn with each run's values: building the figure
(axes, colorbar, legend, their text) is a third of drawing it, and the jobs of a sweep in one
process (a lane group, the basic launcher's jobs) share their grid. It is saved by
tasks/shared/png.py; the pixels are those of a new figure (tests/tasks/test_pictures.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tasks.shared.png import save_tight

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_open: dict[tuple, tuple] = {}  # grid layout -> (figure, axes, image, arrows), kept for the next run


def policy(values: np.ma.MaskedArray, arrows: np.ndarray, wall: np.ndarray, goal: np.ndarray, end: np.ndarray,
           title: str, path: Path) -> Path:
    """`values`: V^pi as a (rows, cols) array, walls masked; `arrows`: each state's expected
    (drow, dcol); `wall`, `goal`, `end`: masks over the states (task.py's `cell_kinds`)."""
    return save_tight(_figure(values, arrows, wall, goal, end, title), path, dpi=120)


def _figure(values: np.ma.MaskedArray, arrows: np.ndarray, wall: np.ndarray, goal: np.ndarray, end: np.ndarray,
            title: str) -> Figure:
    """The figure of this grid layout holding these values and arrows: kept from an earlier run, or new."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = values.shape
    rr, cc = np.divmod(np.arange(len(wall)), cols)
    live = ~(wall | goal | end)
    key = (rows, cols, wall.tobytes(), goal.tobytes(), end.tobytes())
    if key in _open:
        fig, ax, im, quiver = _open[key]
        im.set_data(values)
        # Scaled to this run's values, as a new image is, in one change: each change of the norm
        # redraws the colorbar (a tenth of the save), and setting vmin, vmax, autoscaling made three.
        im.autoscale()
        quiver.set_UVC(arrows[live, 1], -arrows[live, 0])
        ax.set_title(title, fontsize=9)
        return fig
    fig, ax = plt.subplots(figsize=(1 + 0.8 * cols, 0.8 * rows + 0.8))
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.25")  # walls: dark grey, outside the colour scale
    im = ax.imshow(values, cmap=cmap)
    fig.colorbar(im, ax=ax, label=r"$V^\pi(s)$")
    quiver = ax.quiver(cc[live], rr[live], arrows[live, 1], -arrows[live, 0], color="white", scale=1.6,
                       scale_units="xy")
    if end.any():
        ax.scatter(cc[end], rr[end], marker="s", s=120, facecolors="none", edgecolors="red", label="ends the episode")
    ax.scatter(cc[goal], rr[goal], marker="*", s=220, color="gold", edgecolors="black", label="goal")
    if wall.any():
        ax.scatter([], [], marker="s", s=120, color="0.25", label="never entered")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, fontsize=7, frameon=False)
    ax.set_title(title, fontsize=9)
    ax.set_xticks(range(cols)), ax.set_yticks(range(rows))
    _open[key] = fig, ax, im, quiver
    return fig
