"""Sweeps as a user runs them (`runner -m ...` in a subprocess): the end-of-sweep table and exit
status, skip-completed, checkpoints and exact resume, wandb runs per job, the joblib and submitit
launchers, the Optuna preset and the wandb-sweep command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
TINY = ("task=gan", "task.steps=30", "log_every=10")  # a job of a few milliseconds


def runner(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, env=env or ENV, text=True,
                          capture_output=True, timeout=timeout)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_failed_job_does_not_stop_the_sweep_table_lists_every_job_and_exit_is_nonzero(tmp_path):
    proc = runner("-m", "task._target_=tests.faulty.FailingClassifier", "task.epochs=null", "task.steps=25",
                  "+task.fail_at=30,5", "optim=sgd", "optim.lr=0.1,1e9", "logger=none", f"hydra.sweep.dir={tmp_path}")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    statuses = [summary(tmp_path / str(i))["status"] for i in range(4)]
    assert statuses == ["completed", "diverged", "failed", "failed"], statuses
    table = out[out.index("sweep: 4 jobs"):]
    for needle in ("+task.fail_at=30 optim.lr=0.1", "+task.fail_at=5 optim.lr=1000000000.0", "completed", "diverged",
                   "RuntimeError: boom at step 5", "train/grad_norm", "eval/acc", "every job:",
                   "2 of 4 jobs did not finish: 2 (failed), 3 (failed)", f"sweep folder: {tmp_path}"):
        assert needle in table, (needle, table)

