"""A run's records on their way out: each one to metrics.jsonl, the summary's history, the tracker and
the terminal, and the verdict on whether the run diverged at it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from runner.resume import stops
from runner.run.metrics import History, MetricsFile
from runner.run.outcome import console
from runner.run.progress import Reporter, bar_title


class Recorder:
    """Fans each record out to metrics.jsonl, the summary's history, the tracker and the terminal."""

    def __init__(self, cfg: DictConfig, run_dir: Path, primary: str, total: int, tracker: Any, name: str,
                 resume_step: int | None = None):
        self.history, self.at = History(primary, cfg.metrics.targets), resume_step
        self.file = MetricsFile(run_dir / "metrics.jsonl", keep_until=resume_step)
        for record in self.file.kept:  # a resumed run: its summary covers the steps before the stop
            self.history.add(record)
        self.tracker, self.factor = tracker, cfg.metrics.diverge_factor
        self.reporter = Reporter(console, total, bar_title(name, cfg.seed), primary,  # a sweep keeps one line per job
                                 transient=HydraConfig.get().mode == RunMode.MULTIRUN)

    def clocks(self) -> tuple[float, float]:
        """(training time, wall time) of the last record kept from before a resume."""
        last = self.file.kept[-1] if self.file.kept else {}
        return last.get("time/elapsed_s", 0.0), last.get("time_s", 0.0)

    def emit(self, record: dict[str, float]) -> str | None:
        self.at = record["step"]
        self.file.write(record)
        stops.pause_point("record")
        self.history.add(record)
        self.tracker.log(record)
        self.reporter.update(record)
        return diverged(record, self.history, self.factor)

    def close(self) -> None:
        self.reporter.close()
        self.file.close()


def diverged(record: dict[str, float], history: History, factor: float) -> str | None:
    """Why the run counts as diverged at this record (NaN/Inf, or the primary metric blew up)."""
    bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        return f"diverged at step {record['step']}: {', '.join(bad)} not finite"
    first, value = history.first_value(), record.get(history.primary)
    if first is not None and first > 0 and value is not None and value > factor * first:
        return (f"diverged at step {record['step']}: {history.primary}={value:.3g} "
                f"> {factor:g} x its first value {first:.3g}")
    return None
