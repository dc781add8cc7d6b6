"""The run folder's metric files: `metrics.jsonl` as the run goes, `summary.json` at the end.

`metrics.jsonl` holds one JSON object per logged step, appended and flushed at once, so a crash
loses at most the interval in flight. `summary.json` is written atomically (temporary file, then
rename) whatever the run's ending.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
    def __init__(self, path: Path, keep_until: int | None = None):
        """A new file, or (a resumed run) the existing one cut back to the records up to step
        `keep_until`, so no step appears twice; those records are in `kept`."""
        self.path = path
        self.kept = [r for r in read_records(path) if r["step"] <= keep_until] \
            if keep_until is not None and path.exists() else []
        with path.open("w") as f:
            f.writelines(json.dumps(r, allow_nan=True) + "\n" for r in self.kept)
        self._f = path.open("a")

    def write(self, record: Mapping[str, Any]) -> None:
        self._f.write(json.dumps(record, allow_nan=True) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_records(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=2, allow_nan=True) + "\n")
    os.replace(tmp, path)


def _jsonable(obj: Any) -> Any:
    """Non-finite floats become null, so summary.json is strict JSON that any tool can read."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
