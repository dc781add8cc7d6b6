"""The run folder's metric files: `metrics.jsonl` as the run goes, `summary.json` at the end.

`metrics.jsonl` holds one strict-JSON object per logged step (runner.common.strict_json), each line
written whole or not at all and given to the OS at once, so a kill loses at most the record in
flight and a full disk leaves only whole lines. `summary.json` is written atomically (temporary
file, then rename) whatever the run's ending; `.reserve`, a little disk space set aside while the
run goes, is given back just before it, so a run that filled the disk still leaves its summary.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.common.strict_json import decode, encode, write_json_atomic  # noqa: F401 - write_json_atomic: importable from here

RESERVE, RESERVE_BYTES = ".reserve", 256 << 10  # a summary is a few to tens of KB, runner.log's traceback a few

# Metrics for which larger is better; every other metric (losses, gaps, norms) is minimised.
HIGHER_IS_BETTER = ("acc", "return", "modes", "hq")
NOT_RANKED = ("step", "time_s")
AXES = ("train/grad_evals", "diff/steps", "diff/nfe")  # counters used as x-axes: a final value, no best


def higher_is_better(name: str) -> bool:
    return name.rsplit("/", 1)[-1] in HIGHER_IS_BETTER


class History:
    """Everything the summary needs from the stream of records, kept as it arrives."""

    def __init__(self, primary: str, targets: Mapping[str, Sequence[float]]):
        self.primary = primary
        self.targets = {k: sorted(v) for k, v in targets.items()}
        self.final: dict[str, float] = {}
        self.best: dict[str, float] = {}
        self.series: list[tuple[int, float]] = []  # (step, primary value)
        # target name -> {"step": first record reaching it, "after": the metric's record before
        # that one (null if none), "time_s"}: the crossing lies in (after, step], no closer
        self.reached: dict[str, dict[str, float | None]] = {}
        self.recorded_at: dict[str, int] = {}  # metric -> the last step it was recorded at
        self.last_step = 0

    def add(self, record: Mapping[str, float]) -> None:
        self.last_step = int(record["step"])
        for key, value in record.items():
            if key in NOT_RANKED or key.startswith("time/"):
                continue
            self.final[key] = value
            if math.isfinite(value) and not key.endswith("/lr") and key not in AXES:
                old = self.best.get(key)
                better = old is None or (value > old if higher_is_better(key) else value < old)
                self.best[key] = value if better else old
            if key == self.primary:
                self.series.append((record["step"], value))
            for target in self.targets.get(key, ()):
                name = f"{key}>={target:g}" if higher_is_better(key) else f"{key}<={target:g}"
                hit = value >= target if higher_is_better(key) else value <= target
                if hit and name not in self.reached:
                    self.reached[name] = {"step": record["step"], "after": self.recorded_at.get(key),
                                          "time_s": record.get("time/elapsed_s", math.nan)}
            self.recorded_at[key] = int(record["step"])

    def first_value(self) -> float | None:
        return self.series[0][1] if self.series else None


class MetricsFile:
    """metrics.jsonl, written as the run goes: each record is one line, given to the OS in one
    write(2) as soon as it is made (a kill loses at most the record in flight), whole or not at
    all: when a write fails (a full or read-only disk) the file is cut back to its last whole line
    and the error raised names the file."""

    def __init__(self, path: Path, keep_until: int | None = None):
        """A new file, or (a resumed run) the existing one cut back to the records up to step
        `keep_until`, so no step appears twice; those records are in `kept`."""
        self.path, self.kept, size = path, [], 0
        if keep_until is not None and path.exists():
            self.kept, size = _records_until(path, keep_until)
            os.truncate(path, size)  # one call: a kill leaves the file as it was or cut, never emptied
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | (0 if size else os.O_TRUNC), 0o644)
        self.size = size  # bytes of whole lines
        self.last_step = int(self.kept[-1]["step"]) if self.kept else None  # of the last whole line

    def write(self, record: Mapping[str, Any]) -> None:
        data = (encode(record) + "\n").encode()
        try:
            done = os.write(self.fd, data)
            while done < len(data):  # a short write (a disk filling up): the rest, or the error
                done += os.write(self.fd, data[done:])
        except OSError as e:
            with contextlib.suppress(OSError):  # on a full disk too: cutting frees space
                os.ftruncate(self.fd, self.size)
            raise OSError(e.errno, e.strerror, str(self.path)) from e
        self.size += len(data)
        self.last_step = int(record["step"])

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


def _records_until(path: Path, step: int) -> tuple[list[dict[str, Any]], int]:
    """The records up to `step` at the start of `path`, and the bytes they take. Reading stops at
    a line that is not a whole record (a line cut short by a kill)."""
    records, size = [], 0
    with path.open("rb") as f:
        for line in f:
            try:
                record = decode(json.loads(line)) if line.endswith(b"\n") else None
            except ValueError:
                record = None
            if not isinstance(record, dict) or not isinstance(record.get("step"), int) or record["step"] > step:
                break
            records.append(record)
            size += len(line)
    return records, size


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a metrics.jsonl, non-finite values back as floats. A last line cut short (no
    newline) is left out; any other line that is not JSON raises ValueError naming it."""
    records = []
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(decode(json.loads(line)))
            except ValueError as e:
                if not line.endswith(b"\n"):
                    break
                raise ValueError(f"{path} line {number}: not a JSON record ({e})") from None
    return records


def reserve(run_dir: Path) -> Path | None:
    """Set RESERVE_BYTES of disk space aside in `run_dir` (None: the disk is full already)."""
    path = run_dir / RESERVE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)  # blocks allocated, nothing written
        finally:
            os.close(fd)
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return path


def give_back(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()
