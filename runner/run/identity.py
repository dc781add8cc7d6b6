"""A run's identity, and finding a run of the same config that already finished.

A run's identity is a digest of its resolved config (seed included; `rerun`, `checkpoint_every`,
`logger` and `threads` left out: they do not change what is computed), stored in `summary.json`
and in the checkpoint. A job whose config finished (completed or diverged) in its sweep folder is skipped;
failed and interrupted ones run again, from their checkpoint when they left one. Job numbers
shift when a sweep's values change, so a job folder may hold the finished run of another config:
it is moved aside to `<sweep>/.replaced/<digest>/` before the folder is reused, and a job finds
its own finished run wherever it lies in the sweep folder and takes it home.

What these read from a run folder is checked before it names a path: a digest is 16 hex digits,
a folder taken from is the sweep's own (links resolved), and links are moved or copied as links,
never followed, so nothing outside the sweep folder is moved, written or removed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import reprlib
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf, open_dict, read_write

from runner.common.schema import FINISHED, SKIPPED
from runner.resume import aside
from runner.resume.checkpoint import CHECKPOINT
from runner.resume.lock import LOCK
from runner.run.metrics import RESERVE, write_json_atomic

NOT_IDENTITY = ("rerun", "checkpoint_every", "total_steps", "logger", "threads")  # keys that do not change what a run computes
KEEP_IN_PLACE = (".hydra", "runner.log", SKIPPED, LOCK, RESERVE)  # they belong to the folder's current job
DIGEST = re.compile(r"[0-9a-f]{16}")  # as config_digest writes it


def config_digest(resolved: Mapping[str, Any]) -> str:
    """The digest of `resolved_config(cfg)`, taken before the task is built, so before
    `total_steps` (which the task's budget decides) is known: like the key itself, what reads it
    (a schedule's length) is derived from the rest."""
    identity = {k: v for k, v in resolved.items() if k not in NOT_IDENTITY}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain values. Until the task is built `total_steps` is unknown: it and the
    values read from it (a schedule's length) are null then."""
    if not OmegaConf.is_missing(cfg, "total_steps"):
        return OmegaConf.to_container(cfg, resolve=True)
    with read_write(cfg), open_dict(cfg):  # null for the time of the conversion: a copy costs twice the conversion
        cfg.total_steps = None
        try:
            return OmegaConf.to_container(cfg, resolve=True)
        finally:
            cfg.total_steps = MISSING


def valid_digest(value: Any) -> bool:
    """A digest as `config_digest` makes it: read from a file, anything else is refused (it names
    a folder under `.replaced/`)."""
    return isinstance(value, str) and DIGEST.fullmatch(value) is not None


def _inside(path: Path, root: Path) -> bool:
    """`path`, links resolved, lies in `root`."""
    return path.resolve().is_relative_to(root.resolve())


def _summary(folder: Path) -> dict[str, Any]:
    try:
        found = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _move_contents(src: Path, dst: Path, copy: bool, root: Path) -> None:
    """Move (or copy) a run's files from `src` to `dst` in the sweep folder `root`. Links are moved
    or copied as links, never followed; one to outside `root` is not carried along (when moving,
    the link itself is removed, so the job that reuses `src` cannot write through it)."""
    dst.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        if entry.name in KEEP_IN_PLACE or entry.name == CHECKPOINT:
            continue
        if entry.is_symlink() and not _inside(entry, root):
            aside.warn(f"{entry} is a link to {os.readlink(entry)}, outside the sweep folder {root}: "
                       + ("not copied" if copy else "the link is removed (what it points to is untouched)"))
            if not copy:
                entry.unlink()
            continue
        target = dst / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        if not copy:
            os.replace(entry, target)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True)
        else:
            shutil.copy2(entry, target, follow_symlinks=False)


def claim_folder(run_dir: Path, sweep_dir: Path | None, digest: str) -> None:
    """Before a job uses its folder: a finished run of another config found there is moved aside,
    to `.replaced/<its digest>/`, or `.replaced/unknown-<time>/` when its summary holds no valid
    digest (it can then never be skipped or taken home, but nothing is lost)."""
    old = _summary(run_dir)
    if sweep_dir is None or old.get("status") not in FINISHED or old.get("config_digest") == digest:
        return
    found = old.get("config_digest")
    if valid_digest(found):
        dst = sweep_dir / ".replaced" / found
    else:
        dst = sweep_dir / ".replaced" / f"unknown-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        aside.warn(f"{run_dir / 'summary.json'} has config_digest={reprlib.repr(found)}, not a digest: "
                   f"the finished run it describes is moved to {dst}")
    if not _inside(dst.parent, sweep_dir):
        raise RuntimeError(f"{dst.parent} is a link to outside the sweep folder {sweep_dir}: nothing is moved "
                           f"there; remove the link to run this job")
    _move_contents(run_dir, dst, copy=False, root=sweep_dir)


def _other_runs(run_dir: Path, sweep_dir: Path) -> Iterator[Path]:
    """Job folders of the sweep (at the depth of this job's folder) and runs moved aside."""
    depth = len(run_dir.relative_to(sweep_dir).parts) if run_dir.is_relative_to(sweep_dir) else 1
    for pattern in ("*/" * depth + "summary.json", ".replaced/*/summary.json"):
        yield from (p.parent for p in sorted(sweep_dir.glob(pattern))
                    if p.parent != run_dir and not p.parent.is_symlink() and _inside(p.parent, sweep_dir))


def find_finished(run_dir: Path, sweep_dir: Path | None, digest: str) -> Path | None:
    """The folder of a finished run of this config: this job's folder, or (in a sweep) any run
    folder of the sweep; a run found elsewhere is copied into this job's folder."""
    others = _other_runs(run_dir, sweep_dir) if sweep_dir is not None else iter(())
    for folder in itertools.chain([run_dir], others):
        s = _summary(folder)
        if s.get("status") in FINISHED and s.get("config_digest") == digest:
            if folder != run_dir:
                is_job = (folder / ".hydra").exists()  # another job's folder keeps its run; .replaced/ gives it up
                _move_contents(folder, run_dir, copy=is_job, root=sweep_dir)
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
    if rerun and (run_dir / CHECKPOINT).exists():
        kept = aside.set_aside(run_dir / CHECKPOINT, "replaced")
        aside.warn(f"{run_dir / CHECKPOINT}: rerun=true starts from step 0; the checkpoint is set aside as {kept.name}")
    if rerun:
        aside.start_over(run_dir, "rerun=true starts from step 0")
    (run_dir / SKIPPED).unlink(missing_ok=True)
    if done is not None:
        (run_dir / SKIPPED).touch()
    return done
