"""A figure kept open between runs, saved as PNG cropped to what it draws: the pixels of
`fig.savefig(path, dpi=dpi, bbox_inches="tight")` (tests/tasks/test_pictures.py compares them),
in 60-75% of its time (the README, "Speed", has the measurements).

savefig's "tight" lays the figure out three times: a draw with rendering turned off, then
`get_tightbbox`, then the draw that renders. `get_tightbbox` lays out by itself all that the
box holds (ticks and their labels, axis labels, title, legend), so here the box is measured
first and handed to savefig as a `Bbox`, which then only draws. It is measured by a renderer
kept with the figure: text sizes are cached per renderer, and savefig's own measuring renderer
is a new one at each save.

zlib level 3 rather than Pillow's 6: the same pixels (PNG is lossless), 30% less encoding time
(3 ms of 10 for the phase plane), and files from 2% smaller (the phase plane) to 7% larger (the
policy picture); below level 3 they only grow."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_measures: WeakKeyDictionary = WeakKeyDictionary()  # figure -> its measuring renderer


def save_tight(fig: Figure, path: Path, dpi: float) -> Path:
    """Save `fig` at `dpi`, cropped to its tight box padded by rcParams["savefig.pad_inches"]."""
    import matplotlib
    from matplotlib.backends.backend_agg import RendererAgg

    if fig.get_layout_engine() is not None:  # it moves the axes at the draw, after the box would be measured
        fig.savefig(path, dpi=dpi, bbox_inches="tight", pil_kwargs={"compress_level": 3})
        return path
    if fig.dpi != dpi:
        fig.set_dpi(dpi)  # measured at the resolution it is drawn at: text sizes follow the dpi
    renderer = _measures.get(fig)
    if renderer is None or renderer.dpi != dpi:
        renderer = _measures[fig] = RendererAgg(*fig.canvas.get_width_height(), dpi)
    box = fig.get_tightbbox(renderer).padded(matplotlib.rcParams["savefig.pad_inches"])
    fig.savefig(path, dpi=dpi, bbox_inches=box, pil_kwargs={"compress_level": 3})
    return path
