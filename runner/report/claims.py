"""Claims in a report: a claim's sweep folder holds `claim.json`, written by the claim command
({name, source, measure, relation, rows: [{setting, predicted, measured, ci, verdict, runs}]}).
The report shows its rows (predicted, measured with its interval, PASS/FAIL) and draws beside each
setting's measured primary curve the predicted law, through the curve where the fit window starts:
a rate r per step g(t_a) r^(t - t_a), an exponent p g(t_a) (t / t_a)^p, an order q in NFE
g(N_a) (N / N_a)^-q.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from runner.common.runfiles import Unreadable, kind, read_json
from runner.common.schema import is_number
from runner.report.conv import conv, geometric_curve, median_span, value_at
from runner.report.figures import colours, panels_figure, plain
from runner.report.fit import NAMES, Stat, value_text
from runner.report.html import Table
from runner.report.results import SKIP_DIRS, Run
from runner.report.text import number

CLAIM_FILE = "claim.json"


@dataclass
class Claim:
    path: Path                 # the claim.json
    name: str
    source: str
    measure: str               # conv/rate, conv/exponent, conv/order, or another key
    relation: str
    rows: list[dict[str, Any]]
    data: dict[str, Any]       # the whole file (statement, predict, tolerance, ...: shown when there)


def read_claims(paths: Iterable[Path], unreadable: list[tuple[Path, str]] | None = None) -> list[Claim]:
    """Every claim.json at or below `paths` (one per claim's sweep folder), read as untrusted input
    like the runs: one that cannot be used is added to `unreadable` with why (without that list:
    ValueError)."""
    found: dict[Path, None] = {}
    for root in paths:
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            if CLAIM_FILE in files:
                found[Path(folder) / CLAIM_FILE] = None
    claims = []
    for path in found:
        try:
            d = check_claim(read_json(path.parent, CLAIM_FILE)[1])
            claims.append(Claim(path, d["name"], str(d.get("source") or "-"), d["measure"],
                                str(d.get("relation") or "=="), d["rows"], d))
        except ValueError as e:  # Unreadable too
            why = str(e) if isinstance(e, Unreadable) else f"{CLAIM_FILE}: {e}"
            if unreadable is None:
                raise ValueError(f"{path}: not a claim file: {why}") from None
            unreadable.append((path, why))
    return claims


def check_claim(d: Any) -> dict[str, Any]:
    """`d` if it has what the report reads from a claim file, else ValueError saying what is wrong."""
    if not isinstance(d, dict):
        raise ValueError(f"holds {kind(d)}, not an object")
    for key in ("name", "measure"):
        if not isinstance(d.get(key), str):
            raise ValueError(f"{key} is {kind(d.get(key))}, not a string")
    if not isinstance(d.get("rows"), list) or not all(isinstance(row, dict) for row in d["rows"]):
        raise ValueError(f"rows is {kind(d.get('rows'))}, not a list of objects")
    for i, row in enumerate(d["rows"]):
        ci, runs, setting = row.get("ci"), row.get("runs"), row.get("setting")
        if ci is not None and not (isinstance(ci, list) and len(ci) == 2 and all(v is None or is_number(v) for v in ci)):
            raise ValueError(f"rows[{i}].ci is {kind(ci)}, not null or a list of two numbers")
        if runs is not None and not (isinstance(runs, list) and all(isinstance(r, str) for r in runs)):
            raise ValueError(f"rows[{i}].runs is {kind(runs)}, not a list of folders")
        if setting is not None and not isinstance(setting, dict):
            raise ValueError(f"rows[{i}].setting is {kind(setting)}, not an object")
    return d


def claim_runs(claim: Claim, row: dict[str, Any], runs: Sequence[Run]) -> list[Run]:
    """The runs behind a row: its `runs` folders (relative to the claim's folder, or absolute), else
    the runs whose config has every value of its setting."""
    where = {r.path.resolve(): r for r in runs}
    listed = [where.get((claim.path.parent / p).resolve()) for p in row.get("runs") or []]
    if any(listed):
        return [r for r in listed if r is not None]
    setting = {k.lstrip("+~"): v for k, v in (row.get("setting") or {}).items()}
    return [r for r in runs if setting and all(_same(r.seed if k == "seed" else r.config.get(k), v)
                                               for k, v in setting.items())]


def _same(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def setting_text(row: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in (row.get("setting") or {}).items()) or "-"


def claim_table(claim: Claim) -> Table:
    reasons = any(row.get("reason") for row in claim.rows)
    rows = []
    for row in claim.rows:
        predicted, measured, ci = row.get("predicted"), row.get("measured"), row.get("ci")
        lo, hi = ci if ci and None not in ci else (None, None)
        width = hi - lo if lo is not None and hi is not None else float("nan")  # predicted to the measured's digits
        rows.append([setting_text(row), number(predicted, width) if isinstance(predicted, (int, float)) else str(predicted),
                     value_text(Stat(measured, lo, hi, 1, "run")) if isinstance(measured, (int, float)) else str(measured or "-"),
                     str(row.get("verdict", "-")), str(len(row.get("runs") or [])),
                     *([str(row.get("reason") or "-")] if reasons else [])])
    d = claim.data
    tolerance = d.get("tolerance")
    tolerance = ", ".join(f"{k} {v}" for k, v in tolerance.items() if k != "reason") if isinstance(tolerance, dict) else tolerance
    said = [str(d["statement"]) if d.get("statement") else "",
            f"predicted: {d['predict']}" if d.get("predict") else "", f"tolerance: {tolerance}" if tolerance else "",
            f"source: {claim.source}", f"measured {claim.measure} {claim.relation} predicted, measured and its 95% "
            f"interval as the claim command found them ({claim.path})"]
    return Table(f"Claim: {claim.name}", "; ".join(t for t in said if t),
                 ["setting", "predicted", "measured [95% interval]", "verdict", "runs", *(["reason"] if reasons else [])], rows)


def law(measure: str, predicted: float, t: np.ndarray, t_a: float, g_a: float) -> np.ndarray:
    """The predicted g(t) through (t_a, g_a): a rate r per step, an exponent p in t, an order in NFE."""
    with np.errstate(over="ignore", invalid="ignore"):  # an expanding rate leaves the axes: drawn to its edge
        if measure == "conv/rate":
            return g_a * predicted ** (t - t_a)
        return g_a * (t / t_a) ** (predicted if measure == "conv/exponent" else -predicted)


def claim_figure(claim: Claim, runs: Sequence[Run]) -> Figure | None:
    """Each setting's measured primary curve (geometric mean over its runs) and the predicted law
    through the curve where the fit window starts; None when the claim predicts no rate, exponent
    or order, or no setting has runs."""
    rows = [(row, claim_runs(claim, row, runs)) for row in claim.rows
            if claim.measure in NAMES and isinstance(row.get("predicted"), (int, float))]
    rows = [(row, rs) for row, rs in rows if rs]
    if not rows:
        return None
    axis = "nfe" if claim.measure == "conv/order" else "step"
    handles = [Line2D([], [], color=c, lw=4, alpha=0.5, label=plain(f"{setting_text(row)} [{row.get('verdict', '-')}]: "
                      f"predicted {NAMES[claim.measure]} {row['predicted']:.7g}")) for (row, _), c in zip(rows, colours(len(rows)))]
    fig, (ax,) = panels_figure(1.8, 1, handles + [Line2D([], [], color="k", ls="--", label="predicted law")])
    measured = []
    for i, ((row, rs), colour) in enumerate(zip(rows, colours(len(rows)))):
        c = geometric_curve(rs, conv(rs[0]).get("conv/metric"), axis)
        if c is None:
            continue
        ax.plot(c.x, c.mean, color=colour, lw=4, alpha=0.5)  # wide and pale: the prediction stays visible on it
        measured.append(c.mean[c.mean > 0])
        span = median_span(rs, axis)
        t_a = span[0] if span else float(c.x[c.x > 0][0])
        g_a, t = value_at(c, t_a), np.linspace(t_a, c.x.max(), 200)
        ax.plot(t, law(claim.measure, float(row["predicted"]), t, t_a, g_a), ls="--", color="k", lw=1.1,
                gid=f"predicted {i}")
        ax.plot([t_a], [g_a], "o", color=colour, ms=6, mec="k")
    if measured:
        v = np.concatenate(measured)
        ax.set_ylim(v.min() / 3, v.max() * 3)
    ax.set_yscale("log")
    ax.set_xscale("log" if axis == "nfe" else "linear")
    ax.set(xlabel="NFE" if axis == "nfe" else "step", ylabel=plain(conv(rows[0][1][0]).get("conv/metric") or "primary metric"))
    ax.grid(True, alpha=0.3)
    fig.suptitle(plain(f"claim {claim.name}: measured {claim.measure} {claim.relation} predicted\n"
                       f"source: {textwrap.shorten(claim.source, 110, placeholder=' ...')}\n") +
                 "wide: measured (geometric mean over the setting's runs); dashed: predicted, from the fit window's "
                 "start (dot)", fontsize=10)
    return fig
