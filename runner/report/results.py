"""Runs read back from their folders and grouped by config without the seed: the data behind
`runner-report` (the command is `runner.report`, the statistics `runner.report.aggregate`).

Everything comes from local files: `.hydra/config.yaml` and `overrides.yaml`, `metrics.jsonl`,
`summary.json`. A folder with records but no summary is a run still going or killed
(`unfinished`): its curves are drawn, its numbers stay out of the final tables. Repeats of one
seed (same seed and `config_digest` in two folders, e.g. a sweep run again with rerun=true into
another folder) count once: the one that finished last is kept, the others are listed. Every
file is untrusted input (runner.common.runfiles): a folder with a file that cannot be used is left out
and listed with why, and the other runs are read.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runner.common.records import read_columns
from runner.common.runfiles import Unreadable, kind, read_json, read_yaml
from runner.common.schema import check_summary, is_number

SKIP_DIRS = {".hydra", "wandb", "report", "__pycache__", ".replaced", ".submitit"}  # .replaced: runs set aside by a re-run
# config keys that do not change what a run computes (runner.run.identity.NOT_IDENTITY, and data_dir)
NOT_GROUPED = ("seed", "logger", "data_dir", "rerun", "checkpoint_every", "total_steps", "threads")
NOT_LABELLED = ("seed", "rerun", "checkpoint_every")  # overrides that do not name a group
FINISHED = ("completed", "diverged")          # runs whose final values and fit are results
UNFINISHED = "unfinished"                     # records but no summary.json: running, or killed
CONFIG, OVERRIDES = ".hydra/config.yaml", ".hydra/overrides.yaml"


@dataclass
class Run:
    path: Path
    seed: Any
    config: dict[str, Any]         # flattened (`optim.lr`), NOT_GROUPED keys left out
    overrides: list[str]           # command-line overrides, NOT_LABELLED ones left out
    summary: dict[str, Any]        # {} while the run has not written one
    columns: dict[str, np.ndarray]  # metric -> value per record (NaN where not logged)

    @property
    def status(self) -> str:
        return self.summary.get("status", UNFINISHED)

    def x(self, axis: str) -> np.ndarray | None:
        key = {"step": "step", "grad_evals": "train/grad_evals", "nfe": "diff/nfe"}.get(axis)
        if axis == "time":
            key = "time/elapsed_s" if "time/elapsed_s" in self.columns else "time_s"
        return self.columns.get(key)


@dataclass
class Group:
    label: str
    runs: list[Run]                 # one run per seed (repeats left out)
    repeats: list[tuple[Run, Run]] = field(default_factory=list)  # (repeat left out, run kept instead)
    parts: list[tuple[str, str, str]] = field(default_factory=list)  # (key, short key, value) setting it apart (names)

    @property
    def config(self) -> dict[str, Any]:
        return self.runs[0].config

    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.status in FINISHED]


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


def read_runs(folders: Iterable[Path]) -> tuple[list[Run], list[tuple[Path, str]]]:
    """The runs in `folders`, and the folders that could not be read with why: one bad file leaves
    out its run, never the others."""
    runs, unreadable = [], []
    for folder in folders:
        try:
            runs.append(read_run(folder))
        except Unreadable as e:
            unreadable.append((folder, str(e)))
        except RecursionError:
            unreadable.append((folder, "a file nested too deeply to be one of the runner's"))
        except Exception as e:  # noqa: BLE001 - a case the checks missed still costs one run, not the report
            unreadable.append((folder, f"{type(e).__name__}: {e}"))
    return runs, unreadable


def read_run(path: Path) -> Run:
    """One run folder (runner.common.runfiles reads each file as untrusted input); Unreadable says which
    file is wrong and how."""
    found, config = read_yaml(path, CONFIG)
    if found and not isinstance(config, dict):
        raise Unreadable(f"{CONFIG} holds {kind(config)}, not a mapping of config keys")
    found, overrides = read_yaml(path, OVERRIDES)
    if found and not (isinstance(overrides, list) and all(isinstance(o, str) for o in overrides)):
        raise Unreadable(f"{OVERRIDES} holds {kind(overrides)}, not a list of overrides (strings)")
    found, summary = read_json(path, "summary.json")
    try:
        summary = check_summary(summary) if found else {}
    except ValueError as e:
        raise Unreadable(f"summary.json: {e}") from None
    flat = flatten(config or {})
    return Run(path, flat.get("seed"),
               {k: v for k, v in flat.items() if k.split(".")[0] not in NOT_GROUPED},
               [o for o in overrides or [] if o.lstrip("+~").split("=")[0] not in NOT_LABELLED],
               summary, read_columns(path))


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


# --- grouping --------------------------------------------------------------------------------

def group_runs(runs: Sequence[Run]) -> tuple[list[Group], list[str]]:
    """Groups of runs with equal configs (seed aside), in order of first appearance, each labelled by
    the overrides that set it apart (the report renames them: runner.report.names); and the
    overrides common to every group."""
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
        groups.append(Group(label, *dedupe(g)))
    return groups, [o for o in (members[0][0].overrides if members else []) if o in common]


def dedupe(runs: Sequence[Run]) -> tuple[list[Run], list[tuple[Run, Run]]]:
    """One run per seed and config_digest (a run without a digest, such as an unfinished one, goes
    with its seed's only digest): the latest finished (by start time, then by when its summary was
    written), else the latest; and the (left out, kept) pairs."""
    digests: dict[str, set] = {}
    for run in runs:
        digests.setdefault(str(run.seed), set()).add(run.summary.get("config_digest"))
    same: dict[tuple[str, Any], list[Run]] = {}
    for run in runs:
        several = len(digests[str(run.seed)] - {None}) > 1
        same.setdefault((str(run.seed), run.summary.get("config_digest") if several else None), []).append(run)
    kept = {id(m): max(members, key=_recency) for members in same.values() for m in members}
    return [r for r in runs if kept[id(r)] is r], [(r, kept[id(r)]) for r in runs if kept[id(r)] is not r]


def _recency(run: Run) -> tuple[bool, str, float]:
    try:
        written = (run.path / "summary.json").stat().st_mtime
    except OSError:
        written = 0.0
    return run.status in FINISHED, str(run.summary.get("provenance", {}).get("started_at", "")), written


def swept_lr_keys(groups: Sequence[Group]) -> list[str]:
    """Config keys named `lr` (optim.lr, optim.aux.lr, ...) that take several numeric values (the
    config may hold an interpolation, `${...}`, as Hydra saves it)."""
    keys = dict.fromkeys(k for g in groups for k in g.config if k.split(".")[-1] == "lr")
    return [k for k in keys if len({g.config[k] for g in groups if is_number(g.config.get(k))}) > 1]


def primary_metric(runs: Sequence[Run]) -> str | None:
    names = [r.summary.get("convergence", {}).get("conv/metric") for r in runs]
    names = [n for n in names if n]
    return max(set(names), key=names.count) if names else None
