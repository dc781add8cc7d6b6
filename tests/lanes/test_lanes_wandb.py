"""Lanes with the default logger (wandb, offline): every lane keeps its own wandb run open for the whole
batched computation, so each job's run holds every record of its metrics.jsonl, its summary and
its exit, as its single run's does (read with wandb's own tool, as tests/run/test_records.py does)."""

from __future__ import annotations

import json
import subprocess
import sys

from runner.run.metrics import read_records
from tests.helpers import ROOT
from tests.run.test_records import ENV, inspect, of, wandb_summary


def test_each_lane_logs_its_whole_history_into_its_own_wandb_run(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "runner", "-m", "task=gan", "seed=0,1,2", "task.steps=60",
                           "log_every=10", "hydra/launcher=lanes", f"hydra.sweep.dir={tmp_path}"],
                          cwd=ROOT, env=ENV, text=True, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 jobs as one batched computation" in proc.stdout
    assert "stopped logging to wandb" not in proc.stdout + proc.stderr
    ids = set()
    for job in ("0", "1", "2"):
        summary = json.loads((tmp_path / job / "summary.json").read_text())
        (folder,) = (tmp_path / job / "wandb").glob("offline-run-*")
        records = inspect(folder)
        assert of(records, "run")[0]["run_id"] == summary["wandb_id"]
        ids.add(summary["wandb_id"])
        steps = [h["step"]["num"] for h in of(records, "history") if "gan/dist_to_eq" in json.dumps(h)]
        assert steps == [r["step"] for r in read_records(tmp_path / job / "metrics.jsonl")]
        assert wandb_summary(records)["status"] == "completed" and of(records, "exit")[-1]["exit_code"] == 0
    assert len(ids) == 3
