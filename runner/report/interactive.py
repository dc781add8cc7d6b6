"""The report's figures as interactive plotly charts, read off the matplotlib figures the report
draws (so every figure, whoever draws it, has its interactive twin, the same drawing as its PNG,
SVG and PDF): lines, markers, bands (filled polygons), error bars, axis scales, limits, labels,
titles and texts. A line takes its legend group from the legend entry of its colour (the report
draws one colour per group and legends of proxy lines) or, failing that, from its gid naming a
group; a legend click then shows or hides the group's line, band and marks together. Hover shows
the line's name (the group, or its gid: "median ...", "order ...") and the values at the point.
Each figure has log/linear buttons for its x and y axes.

A line of more than MAX_POINTS points is thinned evenly (first and last kept); the report's mean
curves are on grids of at most 500 points already, so thinning touches only per-run lines.
Arrays travel as base64 typed arrays (plotly.js's `{dtype, bdata}`), float32 where the values fit.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence

import numpy as np
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.colors import to_hex, to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator

from runner.report import html as H

MAX_POINTS = 2000  # per line: more than a browser's plot a thousand pixels wide can show
PX = 96 / 72  # plotly sizes are pixels, matplotlib's points
DASH = {"--": "dash", ":": "dot", "-.": "dashdot", "dashed": "dash", "dotted": "dot", "dashdot": "dashdot"}
MARKER = {"o": "circle", "x": "x-thin-open", "+": "cross-thin-open", "s": "square", "^": "triangle-up",
          "v": "triangle-down", "D": "diamond", "d": "diamond", "*": "star", "_": "line-ew-open", "|": "line-ns-open"}
NO_MARKER = (None, "None", "none", "", " ")


def rgba(colour, alpha: float | None = None) -> str:
    r, g, b, a = to_rgba(colour, alpha)
    return f"rgba({round(r * 255)},{round(g * 255)},{round(b * 255)},{a:.3g})"


def numbers(a) -> dict:
    """An array as plotly.js's typed-array spec: float32 where every finite value fits, else float64."""
    a = np.asarray(a, dtype=float)
    finite = np.abs(a[np.isfinite(a) & (a != 0)])
    small = finite.size == 0 or (finite.max() < 1e37 and finite.min() > 1e-37)
    a = a.astype("<f4" if small else "<f8")
    return {"dtype": "f4" if small else "f8", "bdata": base64.b64encode(a.tobytes()).decode()}


def thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.size <= MAX_POINTS:
        return x, y
    keep = np.unique(np.linspace(0, x.size - 1, MAX_POINTS).round().astype(int))
    return x[keep], y[keep]


def text(s: str) -> str:
    """matplotlib text (escaped `$`, newlines) as plotly's pseudo-HTML; `%` stays out of templates."""
    return html.escape(s.replace(r"\$", "$")).replace("\n", "<br>").replace("%", "&#37;")


class _Panel:
    """One matplotlib Axes and the plotly axes it becomes; turns its artists into traces."""

    def __init__(self, ax, k: int):
        self.ax, self.k = ax, k
        self.x, self.y = ("x", "y") if k == 1 else (f"x{k}", f"y{k}")
        self.log = {"x": ax.get_xscale() == "log", "y": ax.get_yscale() == "log"}

    def _to_data(self, xy: np.ndarray, transform) -> np.ndarray | None:
        """Points in data coordinates, from data or axes-fraction coordinates (axvline, axhspan):
        a fraction is placed inside the current limits, in the axis' own scale."""
        ax = self.ax
        frac = next((dims for t, dims in ((ax.transData, ()), (ax.get_xaxis_transform(), (1,)),
                                          (ax.get_yaxis_transform(), (0,)), (ax.transAxes, (0, 1))) if t is transform), None)
        if frac is None:
            return None
        xy = np.array(xy, dtype=float)
        for dim in frac:
            lo, hi = ax.get_ylim() if dim else ax.get_xlim()
            if self.log["y" if dim else "x"]:
                xy[:, dim] = 10 ** (np.log10(lo) + xy[:, dim] * (np.log10(hi) - np.log10(lo)))
            else:
                xy[:, dim] = lo + xy[:, dim] * (hi - lo)
        return xy

    def traces(self) -> list[dict]:
        out = []
        for artist in self.ax.get_children():
            if not artist.get_visible():
                continue
            if isinstance(artist, Line2D):
                out += self._line(artist)
            elif isinstance(artist, LineCollection):
                out += self._segments(artist)
            elif isinstance(artist, PolyCollection):
                out += self._polygons(artist, [p.vertices for p in artist.get_paths()])
            elif isinstance(artist, Rectangle) and artist is not self.ax.patch:
                corners = artist.get_patch_transform().transform(artist.get_path().vertices)
                out += self._polygons(artist, [corners], artist.get_data_transform())
            elif isinstance(artist, PathCollection):
                out += self._scatter(artist)
        return out

    def _base(self, artist, colour, mode: str) -> dict:
        return {"type": "scatter", "xaxis": self.x, "yaxis": self.y, "mode": mode, "key": to_hex(colour),
                "gid": artist.get_gid(), "showlegend": False}

    def _line(self, line: Line2D) -> list[dict]:
        xy = self._to_data(line.get_xydata(), line.get_transform())
        if xy is None or not len(xy):
            return []
        x, y = thin(xy[:, 0], xy[:, 1])
        marker, style = line.get_marker(), line.get_linestyle()
        drawn = "lines" if style not in NO_MARKER else ""
        mode = "+".join(m for m in (drawn, "markers" if marker not in NO_MARKER else "") if m) or "lines"
        t = self._base(line, line.get_color(), mode) | {"x": numbers(x), "y": numbers(y)}
        colour = rgba(line.get_color(), line.get_alpha())
        if drawn:
            t["line"] = {"color": colour, "width": line.get_linewidth() * PX, "dash": DASH.get(style, "solid")}
        if marker not in NO_MARKER:
            face = line.get_markerfacecolor()
            t["marker"] = {"symbol": MARKER.get(marker, "circle"), "size": line.get_markersize() * PX,
                           "color": rgba(face if face not in NO_MARKER else colour, line.get_alpha()),
                           "line": {"color": rgba(line.get_markeredgecolor(), line.get_alpha()),
                                    "width": max(line.get_markeredgewidth(), 1.0)}}
        return [t]

    def _segments(self, lines: LineCollection) -> list[dict]:
        """Each colour's segments as one trace, NaN between segments (error bars, hlines)."""
        segments, colours = lines.get_segments(), lines.get_colors()
        out = []
        for c in np.unique(np.asarray(colours).reshape(-1, 4), axis=0) if len(colours) else []:
            mine = [s for i, s in enumerate(segments) if np.allclose(colours[i % len(colours)], c)]
            xy = [self._to_data(s, lines.get_transform()) for s in mine]
            xy = [np.vstack([p, [np.nan, np.nan]]) for p in xy if p is not None and len(p)]
            if not xy:
                continue
            xy = np.vstack(xy)
            style = lines.get_linestyle()[0]
            dash = "dash" if style[1] is not None and len(style[1]) == 2 else "dot" if style[1] else "solid"
            out.append(self._base(lines, c[:3], "lines") | {
                "x": numbers(xy[:, 0]), "y": numbers(xy[:, 1]), "connectgaps": False,
                "line": {"color": rgba(c), "width": float(lines.get_linewidths()[0]) * PX, "dash": dash}})
        return out

    def _polygons(self, artist, paths: Sequence[np.ndarray], transform=None) -> list[dict]:
        """Filled shapes (bands, spans) as one trace filled `toself`, NaN between shapes; no hover."""
        parts = [self._to_data(p, transform or artist.get_transform()) for p in paths]
        parts = [np.vstack([p, p[:1], [np.nan, np.nan]]) for p in parts if p is not None and len(p)]
        face = artist.get_facecolor()
        face = face[0] if np.ndim(face) == 2 else face
        if not parts or not len(face):
            return []
        xy = np.vstack(parts)
        return [self._base(artist, face[:3], "lines") | {
            "x": numbers(xy[:, 0]), "y": numbers(xy[:, 1]), "fill": "toself", "fillcolor": rgba(face),
            "line": {"width": 0}, "hoverinfo": "skip", "band": True}]

    def _scatter(self, points: PathCollection) -> list[dict]:
        xy = self._to_data(points.get_offsets(), points.get_offset_transform())
        face = points.get_facecolor()
        if xy is None or not len(xy) or not len(face):
            return []
        x, y = thin(xy[:, 0], xy[:, 1])
        size = float(np.sqrt(points.get_sizes()[0])) * PX if len(points.get_sizes()) else 6.0
        return [self._base(points, face[0][:3], "markers") | {
            "x": numbers(x), "y": numbers(y), "marker": {"color": rgba(face[0]), "size": size}}]

    def axes(self, box, fig: Figure, shared: dict[str, str]) -> dict:
        """Layout of this panel's two axes: domain (matplotlib's place in the union `box` of all
        panels), scale, range, label, fixed ticks where matplotlib has them."""
        pos, ax, layout = self.ax.get_position(), self.ax, {}
        for dim, (lo, hi), (b0, b1), name in (("x", (pos.x0, pos.x1), (box.x0, box.x1), self.x),
                                              ("y", (pos.y0, pos.y1), (box.y0, box.y1), self.y)):
            limits = ax.get_xlim() if dim == "x" else ax.get_ylim()
            log = self.log[dim]
            a = {"domain": [max(0.0, (lo - b0) / (b1 - b0)), min(1.0, (hi - b0) / (b1 - b0))],
                 "type": "log" if log else "linear", "anchor": self.y if dim == "x" else self.x,
                 "title": {"text": text(ax.get_xlabel() if dim == "x" else ax.get_ylabel()), "font": {"size": 12}},
                 "showgrid": True, "gridcolor": "rgba(0,0,0,0.08)", "zeroline": False, "showline": True,
                 "linecolor": "#444", "mirror": True, "ticks": "outside", "exponentformat": "power"}
            if not log or min(limits) > 0:
                a["range"] = [float(np.log10(v)) if log else float(v) for v in limits]
            axis = ax.xaxis if dim == "x" else ax.yaxis
            labels = [t for t in (ax.get_xticklabels() if dim == "x" else ax.get_yticklabels())]
            if not any(t.get_visible() and t.get_text() for t in labels):
                a["showticklabels"] = False  # a shared axis labelled on its first panel only
            elif isinstance(axis.get_major_locator(), FixedLocator):
                a |= {"tickvals": [float(v) for v in axis.get_ticklocs()], "ticktext": [text(t.get_text()) for t in labels]}
            if name in shared:
                a["matches"] = shared[name]
            layout[("xaxis" if dim == "x" else "yaxis") + (str(self.k) if self.k > 1 else "")] = a
        return layout


def _legend(fig: Figure) -> dict[str, str]:
    """Colour (hex) -> label of the legend entry drawn in it, over the figure's and panels' legends."""
    found = {}
    for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]:
        for handle, label in zip(legend.legend_handles, legend.get_texts()):
            colour = handle.get_color() if isinstance(handle, Line2D) else handle.get_facecolor()
            colour = colour[0] if np.ndim(colour) == 2 else colour
            found.setdefault(to_hex(colour), label.get_text())
    return found


def _group_of(trace: dict, legend: dict[str, str]) -> str | None:
    if trace["key"] in legend:
        return legend[trace["key"]]
    gid = trace["gid"] or ""
    return next((label for label in legend.values() if label.split(" (n=")[0] in gid), None) if gid else None


def _groups(traces: list[dict], legend: dict[str, str], labels: dict[str, tuple[str, str]]) -> None:
    """Legend group, name and hover text of each trace; the group's legend entry is its most
    opaque line (not a pale per-run one)."""
    order = list(dict.fromkeys(legend.values()))
    groups = [_group_of(t, legend) for t in traces]
    opacity = [0.0 if t.get("band") else float((t.get("line") or t.get("marker") or {}).get(
        "color", "rgba(0,0,0,1)").rsplit(",", 1)[-1][:-1]) for t in traces]
    entry = {}
    for i, group in enumerate(groups):
        if group is not None and not traces[i].get("band") and (group not in entry or opacity[i] > opacity[entry[group]]):
            entry[group] = i
    for i, (t, group) in enumerate(zip(traces, groups)):
        gid, band = t.pop("gid"), t.pop("band", False)
        t.pop("key")
        if group is not None:
            t |= {"legendgroup": group, "name": text(group), "legendrank": 1000 + order.index(group),
                  "showlegend": entry.get(group) == i}
        if not band:
            who = gid or group
            xl, yl = labels[t["xaxis"]]
            t["hovertemplate"] = (f"<b>{text(who)}</b><br>" if who else "") + \
                f"{xl}: %{{x:.5~g}}<br>{yl}: %{{y:.5~g}}<extra></extra>"


def figure_spec(fig: Figure) -> dict:
    """The plotly figure (title, data, layout, and the axes the log/linear buttons switch) of a matplotlib
    figure that has been drawn (saved) once, so its layout is settled."""
    axes = [ax for ax in fig.axes if ax.get_visible()]
    panels = [_Panel(ax, k) for k, ax in enumerate(axes, 1)]
    boxes = [ax.get_position() for ax in axes]
    box = type(boxes[0]).union(boxes) if boxes else None
    shared: dict[str, str] = {}
    for p in panels:
        for q in panels[:p.k - 1]:
            if p.ax.get_shared_y_axes().joined(p.ax, q.ax):
                shared.setdefault(p.y, q.y)
            if p.ax.get_shared_x_axes().joined(p.ax, q.ax):
                shared.setdefault(p.x, q.x)
    layout, data, notes = {}, [], []
    for p in panels:
        layout |= p.axes(box, fig, shared)
        data += p.traces()
        if p.ax.get_title():
            pos = p.ax.get_position()
            notes.append(_note(p.ax.get_title(), ((pos.x0 + pos.x1) / 2 - box.x0) / box.width, 1.02, "bottom"))
        for t in p.ax.texts:
            if t.get_visible() and t.get_text():
                (x0, y0), (x1, y1) = fig.transFigure.inverted().transform(t.get_window_extent().get_points())
                notes.append(_note(t.get_text(), ((x0 + x1) / 2 - box.x0) / box.width, ((y0 + y1) / 2 - box.y0) / box.height,
                                   "middle", t.get_color(), t.get_fontsize()))
    labels = {p.x: (text(p.ax.get_xlabel()) or "x", text(p.ax.get_ylabel()) or "y") for p in panels}
    legend = _legend(fig)
    _groups(data, legend, labels)
    rows = 1 + sum(len(label) + 4 for label in set(legend.values())) * 7 // 1100  # legend rows at ~7 px a character
    bottom = 70 + 22 * rows
    layout |= {"height": 360 + bottom, "margin": {"l": 70, "r": 20, "t": 30, "b": bottom},
               "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 0, "yref": "container", "yanchor": "bottom",
                          "font": {"size": 11}},
               "hovermode": "closest", "plot_bgcolor": "white", "annotations": notes}
    return {"title": fig.get_suptitle(), "data": data, "layout": layout, "axes": {"x": [p.x.replace("x", "xaxis") for p in panels],
                                                     "y": [p.y.replace("y", "yaxis") for p in panels]}}


def _note(s: str, x: float, y: float, anchor: str, colour="#333", size: float = 10) -> dict:
    return {"text": text(s), "x": x, "y": y, "xref": "paper", "yref": "paper", "showarrow": False,
            "yanchor": anchor, "font": {"color": rgba(colour), "size": size * PX}}


def figure_html(fig: Figure, name: str, files: Sequence[str]) -> str:
    """One figure's part of the page: the plot, its log/linear buttons, and links to its files."""
    spec = figure_spec(fig)
    title = "<br>".join(map(html.escape, spec.pop("title").replace(r"\$", "$").splitlines()))
    spec = json.dumps(spec, separators=(",", ":"), allow_nan=False)
    spec = spec.replace("</", "<\\/").replace("<!--", "<\\!--")  # text from run folders never ends the script
    buttons = "".join(f"<button type=button data-axis={d} data-type={t}>{d}: {t}</button>"
                      for d in "xy" for t in ("linear", "log"))
    links = " ".join(f'<a href="{html.escape(f)}">{html.escape(f.rsplit(".", 1)[-1].upper())}</a>' for f in files)
    return (f"<figure class=plotly><p class=title>{title}</p><div class=plot></div><script type=application/json class=spec>{spec}</script>"
            f"<figcaption><span class=axes>{buttons}</span> {html.escape(name)}: {links}</figcaption></figure>")


def page(title: str, meta: Sequence[str], sections: Sequence[tuple[str, Sequence[str]]], plots: dict[str, str]) -> str:
    """The static page's sections with each figure's part swapped for its interactive one
    (`plots`), plotly.js inlined once: one file that works offline."""
    live = [(heading, [plots.get(part, part) for part in parts]) for heading, parts in sections]
    return H.page(title, meta, live, head=f"<script>{plotly_js()}</script>", tail=f"<script>{SCRIPT}</script>")


def plotly_js() -> str:
    """plotly.js, from the plotly package (its offline bundle), to inline once in the page."""
    from plotly.offline import get_plotlyjs  # imported on use: only the HTML page needs it

    return get_plotlyjs()


# Draws each figure from its spec and wires its buttons; runs once, after the figures' markup.
SCRIPT = """for (const fig of document.querySelectorAll("figure.plotly")) {
  const spec = JSON.parse(fig.querySelector("script.spec").textContent);
  const div = fig.querySelector("div.plot");
  Plotly.newPlot(div, spec.data, spec.layout, {responsive: true, displaylogo: false});
  for (const b of fig.querySelectorAll("button[data-axis]")) b.addEventListener("click", () => {
    const update = {};
    for (const a of spec.axes[b.dataset.axis]) { update[a + ".type"] = b.dataset.type; update[a + ".autorange"] = true; }
    Plotly.relayout(div, update);
  });
}"""
