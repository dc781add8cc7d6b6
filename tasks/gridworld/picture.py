"""policy.png: a gridworld policy's mean move in each cell over a heat map of V^pi, drawn on one
figure per grid layout that is kept open and redrawn with each run's values: building the figure
(axes, colorbar, legend, their text) is a third of drawing it, and the jobs of a sweep in one
process (a lane group, the basic launcher's jobs) share their grid. The file is byte for byte the
one a new figure writes (tests/gridworld/test_picture.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_open: dict[tuple, tuple] = {}  # grid layout -> (figure, axes, image, arrows), kept for the next run


def policy(values: np.ma.MaskedArray, arrows: np.ndarray, wall: np.ndarray, goal: np.ndarray, end: np.ndarray,
           title: str, path: Path) -> Path:
    """`values`: V^pi as a (rows, cols) array, walls masked; `arrows`: each state's expected
    (drow, dcol); `wall`, `goal`, `end`: masks over the states (task.py's `cell_kinds`)."""
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
        im.norm.vmin = im.norm.vmax = None  # scaled to this run's values, as a new image is
        im.autoscale_None()
        quiver.set_UVC(arrows[live, 1], -arrows[live, 0])
        ax.set_title(title, fontsize=9)
    else:
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
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
