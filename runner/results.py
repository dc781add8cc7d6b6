"""Runs read back from their folders, grouped by config without the seed, and summarised across
seeds: the data behind `runner-report` (the command is `runner.report`).

Everything comes from local files: `.hydra/config.yaml` and `overrides.yaml`, `metrics.jsonl`,
`summary.json`. A folder with records but no summary is a run still going or killed
(`unfinished`): its curves are drawn, its numbers stay out of the final tables.

Spread across seeds is a 95% Student-t interval of the mean, mean +- t(0.975, n-1) s / sqrt(n).
Curves of a group are put on one grid before averaging: on the step axis the grid is the union
of the steps the runs logged (thinned evenly to at most MAX_POINTS), on time and gradient
evaluations an even grid over the runs' range; each run is interpolated linearly on it, only
inside its own range, so a run that stopped early leaves the mean where it stopped. Metrics drawn
on a log axis are averaged as log10 (a geometric mean, band multiplicative), zeros lifted to the
smallest positive value seen.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import yaml

MAX_POINTS = 500         # grid points per curve: far more than a figure a few inches wide can show
SKIP_DIRS = {".hydra", "wandb", "report", "__pycache__"}
NOT_GROUPED = ("seed", "logger", "data_dir")  # config keys that do not change what a run computes
FINISHED = ("completed", "diverged")          # runs whose final values and fit are results
UNFINISHED = "unfinished"                     # records but no summary.json: running, or killed
LOG_HINTS = ("norm", "dist", "gap", "subopt", "loss", "w2", "mmd")  # quantities that go to zero
NOT_CURVES = ("step", "time_s", "train/grad_evals")
AXES = {"step": "step", "time": "training time (s)", "grad_evals": "gradient evaluations"}


@dataclass
class Run:
    path: Path
    seed: Any
    config: dict[str, Any]         # flattened (`optim.lr`), NOT_GROUPED keys left out
    overrides: list[str]           # command-line overrides, seed left out
    summary: dict[str, Any]        # {} while the run has not written one
    columns: dict[str, np.ndarray]  # metric -> value per record (NaN where not logged)

    @property
    def status(self) -> str:
        return self.summary.get("status", UNFINISHED)

    def x(self, axis: str) -> np.ndarray | None:
        key = {"step": "step", "grad_evals": "train/grad_evals"}.get(axis)
        if axis == "time":
            key = "time/elapsed_s" if "time/elapsed_s" in self.columns else "time_s"
        return self.columns.get(key)


@dataclass
class Group:
    label: str
    runs: list[Run]

    @property
    def config(self) -> dict[str, Any]:
        return self.runs[0].config

    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.status in FINISHED]


@dataclass
class Curve:
    x: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: np.ndarray


# --- reading ---------------------------------------------------------------------------------

def find_runs(paths: Iterable[Path]) -> list[Path]:
    """Run folders (holding summary.json or metrics.jsonl) at or below each path, in job order."""
    found: dict[Path, None] = {}
    for root in paths:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
            if "summary.json" in files or "metrics.jsonl" in files:
                found[Path(folder)] = None
    return sorted(found, key=lambda p: [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", str(p))])


def read_run(path: Path) -> Run:
    config = _yaml(path / ".hydra" / "config.yaml") or {}
    overrides = _yaml(path / ".hydra" / "overrides.yaml") or []
    summary = json.loads((path / "summary.json").read_text()) if (path / "summary.json").exists() else {}
    metrics = path / "metrics.jsonl"
    flat = flatten(config)
    return Run(path, flat.get("seed"),
               {k: v for k, v in flat.items() if k.split(".")[0] not in NOT_GROUPED},
               [o for o in overrides if o.lstrip("+~").split("=")[0] != "seed"],
               summary, read_columns(metrics) if metrics.exists() else {})


def read_columns(path: Path) -> dict[str, np.ndarray]:
    """metrics.jsonl as one float array per key (NaN where a record lacks the key). A last line
    cut short by a kill is dropped."""
    lines = path.read_text().splitlines()
    try:  # one parser call for the whole file: several times faster than one per line
        records = json.loads("[" + ",".join(line for line in lines if line.strip()) + "]")
    except json.JSONDecodeError:  # a kill cut the last line short; any other bad line is an error
        try:
            records = [json.loads(line) for line in lines[:-1] if line.strip()]
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: a line that is not a JSON record ({e})") from None
    if not records:
        return {}
    # Most records carry the same keys (eval metrics come every eval_every steps): those are read
    # with one itemgetter call each, the rest key by key.
    usual = records[len(records) // 2].keys()
    odd = [i for i, r in enumerate(records) if r.keys() != usual]
    keys = list(dict.fromkeys(itertools.chain(usual, *(records[i] for i in odd))))
    table = np.full((len(records), len(keys)), np.nan)
    rows = np.ones(len(records), dtype=bool)
    rows[odd] = False
    if rows.any():
        get = itemgetter(*usual)
        values = [get(r) for r, ok in zip(records, rows) if ok]
        table[rows, :len(usual)] = np.array(values, dtype=float).reshape(-1, len(usual))
    for i in odd:
        table[i] = np.array([records[i].get(k) for k in keys], dtype=float)
    return {k: table[:, j] for j, k in enumerate(keys)}


def _yaml(path: Path) -> Any:
    if not path.exists():
        return None
    with path.open() as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


# --- grouping --------------------------------------------------------------------------------

def group_runs(runs: Sequence[Run]) -> tuple[list[Group], list[str]]:
    """Groups of runs with equal configs (seed aside), in order of first appearance, each named by
    the overrides that set it apart; and the overrides common to every group."""
    by_config: dict[str, list[Run]] = {}
    for run in runs:
        key = json.dumps(run.config, sort_keys=True, default=str) if run.config else str(run.path)
        by_config.setdefault(key, []).append(run)
    members = list(by_config.values())
    common = set.intersection(*(set(g[0].overrides) for g in members)) if members else set()
    groups, seen = [], set()
    for g in members:
        label = " ".join(o for o in g[0].overrides if o not in common) or " ".join(g[0].overrides) or "default"
        if not g[0].config:
            label = g[0].path.name
        if label in seen:  # equal overrides, different configs (e.g. defaults changed between sweeps)
            label += f" (config {sum(s.startswith(label) for s in seen) + 1})"
        seen.add(label)
        groups.append(Group(label, g))
    return groups, [o for o in (members[0][0].overrides if members else []) if o in common]


def swept_lr_keys(groups: Sequence[Group]) -> list[str]:
    """Config keys named `lr` (optim.lr, optim.aux.lr, ...) that take several values."""
    keys = dict.fromkeys(k for g in groups for k in g.config if k.split(".")[-1] == "lr")
    return [k for k in keys if len({str(g.config.get(k)) for g in groups}) > 1]


# --- statistics ------------------------------------------------------------------------------

def t_interval(a: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, 95% t-interval half-width and count of the finite values along `axis` (NaN when n < 2)."""
    from scipy.stats import t  # imported on use: scipy.stats takes a while to import

    a = np.asarray(a, dtype=float)
    ok = np.isfinite(a)
    n = ok.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, a, 0.0).sum(axis=axis) / n
        dev = np.where(ok, a - np.expand_dims(mean, axis), 0.0)
        sem = np.sqrt((dev ** 2).sum(axis=axis) / (n - 1) / n)
        half = np.where(n >= 2, t.ppf(0.975, np.maximum(n - 1, 1)) * sem, np.nan)
    return mean, half, n


def stat(values: Iterable[float | None]) -> tuple[float, float, int]:
    """(mean, half-width, n) of the finite values among `values`."""
    a = np.array([v for v in values if v is not None], dtype=float)
    mean, half, n = t_interval(a) if a.size else (np.nan, np.nan, 0)
    return float(mean), float(half), int(n)


def y_scale(runs: Sequence[Run], metric: str) -> tuple[str, float | None]:
    """How to draw `metric`: ("log", smallest positive value) for values >= 0 that span two decades
    (one for gaps, norms and losses by name); ("symlog", linear range) for signed values whose
    largest is 1000 times their median; ("linear", None) otherwise."""
    values = [r.columns[metric] for r in runs if metric in r.columns]
    v = np.concatenate(values) if values else np.array([])
    v = v[np.isfinite(v)]
    size = np.abs(v[v != 0])
    if not size.size:
        return "linear", None
    span = size.max() / size.min()
    if v.min() >= 0:
        named = any(h in metric.rsplit("/", 1)[-1] for h in LOG_HINTS)
        return ("log", float(size.min())) if span >= 100 or (named and span >= 10) else ("linear", None)
    middle = float(np.median(size))
    return ("symlog", middle) if size.max() >= 1000 * middle else ("linear", None)


def curve(runs: Sequence[Run], metric: str, axis: str, floor: float | None) -> Curve | None:
    """Mean and 95% band of `metric` across `runs` against `axis` (step, time or grad_evals)."""
    pairs = []
    for run in runs:
        x, y = run.x(axis), run.columns.get(metric)
        if x is None or y is None:
            continue
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.any():
            pairs.append((x[ok], np.log10(np.maximum(y[ok], floor)) if floor else y[ok]))
    if not pairs:
        return None
    if axis == "step":
        grid = np.unique(np.concatenate([x for x, _ in pairs]))
        grid = grid[np.unique(np.linspace(0, len(grid) - 1, min(len(grid), MAX_POINTS)).round().astype(int))]
    else:
        grid = np.linspace(min(x[0] for x, _ in pairs), max(x[-1] for x, _ in pairs), MAX_POINTS)
    values = np.vstack([np.interp(grid, x, y, left=np.nan, right=np.nan) for x, y in pairs])
    mean, half, n = t_interval(values)
    lo, hi = mean - half, mean + half
    if floor:
        mean, lo, hi = 10 ** mean, 10 ** lo, 10 ** hi
    return Curve(grid, mean, lo, hi, n)


def curve_metrics(runs: Sequence[Run], primary: str | None) -> list[str]:
    """Metrics worth a figure, the primary first: logged, and changing in at least one run."""
    keys = dict.fromkeys(k for r in runs for k in r.columns
                         if k not in NOT_CURVES and not k.startswith("time/"))
    moving = [k for k in keys if any(_moves(r.columns.get(k)) for r in runs)]
    return sorted(moving, key=lambda k: k != primary)


def _moves(v: np.ndarray | None) -> bool:
    v = v[np.isfinite(v)] if v is not None else np.array([])
    return v.size > 1 and bool(v.max() > v.min())


def primary_metric(runs: Sequence[Run]) -> str | None:
    names = [r.summary.get("convergence", {}).get("conv/metric") for r in runs]
    names = [n for n in names if n]
    return max(set(names), key=names.count) if names else None


def fmt(mean: float, half: float = math.nan) -> str:
    """`mean ± half`, the mean given to the precision that the interval supports."""
    if not math.isfinite(mean):
        return "-"
    if not math.isfinite(half) or half == 0:
        return f"{mean:.6g}"
    digits = 1 - math.floor(math.log10(half))  # decimals that show two significant digits of the half-width
    if 1e-4 <= abs(mean) < 1e6 and digits <= 10:
        return f"{mean:.{max(digits, 0)}f} ± {half:.{max(digits, 0)}f}"
    if half < 1e-7 * abs(mean):  # seeds agree to rounding: seven digits of the mean
        return f"{mean:.7g} ± {half:.1e}"
    return f"{mean:.3g} ± {half:.2g}"


def mean_ci(values: Iterable[float | None]) -> str:
    """The finite values as `mean ± 95% half-width`."""
    mean, half, _ = stat(values)
    return fmt(mean, half)
