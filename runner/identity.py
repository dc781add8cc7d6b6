"""A run's identity, and finding a run of the same config that already finished.

A run's identity is a digest of its resolved config (seed included; `rerun`, `checkpoint_every`,
`logger` and `threads` left out: they do not change what is computed), stored in `summary.json`
and in the checkpoint. A job whose config finished (completed or diverged) in its sweep folder is skipped;
failed and interrupted ones run again, from their checkpoint when they left one. Job numbers
shift when a sweep's values change, so a job folder may hold the finished run of another config:
it is moved aside to `<sweep>/.replaced/<digest>/` before the folder is reused, and a job finds
its own finished run wherever it lies in the sweep folder and takes it home.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from runner.checkpoint import CHECKPOINT
from runner.metrics import write_json_atomic
from runner.sweep import FINISHED, SKIPPED

NOT_IDENTITY = ("rerun", "checkpoint_every", "total_steps", "logger", "threads")  # keys that do not change what a run computes
KEEP_IN_PLACE = (".hydra", "runner.log", SKIPPED)  # they belong to the folder's current job


def config_digest(resolved: Mapping[str, Any]) -> str:
    """The digest of `resolved_config(cfg)`, taken before the task is built, so before
    `total_steps` (which the task's budget decides) is known: like the key itself, what reads it
    (a schedule's length) is derived from the rest."""
    identity = {k: v for k, v in resolved.items() if k not in NOT_IDENTITY}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain values. Until the task is built `total_steps` is unknown: it and the
    values read from it (a schedule's length) are null then."""
    if OmegaConf.is_missing(cfg, "total_steps"):
        cfg = cfg.copy()
        with open_dict(cfg):
            cfg.total_steps = None
    return OmegaConf.to_container(cfg, resolve=True)


def _summary(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def _move_contents(src: Path, dst: Path, copy: bool) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        if entry.name in KEEP_IN_PLACE or entry.name == CHECKPOINT:
            continue
        target = dst / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        if copy:
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, target)
        else:
            os.replace(entry, target)


def claim_folder(run_dir: Path, sweep_dir: Path | None, digest: str) -> None:
    """Before a job uses its folder: a finished run of another config found there is moved aside."""
    old = _summary(run_dir)
    if sweep_dir is not None and old.get("status") in FINISHED and old.get("config_digest") not in (None, digest):
        _move_contents(run_dir, sweep_dir / ".replaced" / old["config_digest"], copy=False)


def _other_runs(run_dir: Path, sweep_dir: Path) -> Iterator[Path]:
    """Job folders of the sweep (at the depth of this job's folder) and runs moved aside."""
    depth = len(run_dir.relative_to(sweep_dir).parts) if run_dir.is_relative_to(sweep_dir) else 1
    for pattern in ("*/" * depth + "summary.json", ".replaced/*/summary.json"):
        yield from (p.parent for p in sorted(sweep_dir.glob(pattern)) if p.parent != run_dir)


def find_finished(run_dir: Path, sweep_dir: Path | None, digest: str) -> Path | None:
    """The folder of a finished run of this config: this job's folder, or (in a sweep) any run
    folder of the sweep; a run found elsewhere is copied into this job's folder."""
    others = _other_runs(run_dir, sweep_dir) if sweep_dir is not None else iter(())
    for folder in itertools.chain([run_dir], others):
        s = _summary(folder)
        if s.get("status") in FINISHED and s.get("config_digest") == digest:
            if folder != run_dir:
                is_job = (folder / ".hydra").exists()  # another job's folder keeps its run; .replaced/ gives it up
                _move_contents(folder, run_dir, copy=is_job)
                if not is_job:
                    shutil.rmtree(folder)
                write_json_atomic(run_dir / "summary.json", {**s, "run_dir": str(run_dir)})
            return folder
    return None


def prepare_folder(run_dir: Path, sweep_dir: Path | None, digest: str, rerun: bool) -> Path | None:
    """Before a job starts: clear its folder of another config's finished run, and return where
    this config already finished (None: the job runs). A skipped job's folder is marked so the
    end-of-sweep table can say so."""
    claim_folder(run_dir, sweep_dir, digest)
    done = None if rerun else find_finished(run_dir, sweep_dir, digest)
    (run_dir / SKIPPED).unlink(missing_ok=True)
    if done is not None:
        (run_dir / SKIPPED).touch()
    return done
