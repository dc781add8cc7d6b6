"""The `runner` command as a user runs it, through a subprocess: the default experiment (offline
wandb files included), a two-job sweep, and every way a run can end (completed, diverged,
failed, interrupted, invalid config)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from runner.run.metrics import read_records
from tests.helpers import ROOT, TASKS, signal_mid_run

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}


def runner(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, env=ENV, text=True,
                          capture_output=True, timeout=timeout)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_default_run_reaches_90_percent_on_real_digits_and_writes_offline_wandb(tmp_path):
    """`runner` with no options: the README's first command (here in a temporary run folder)."""
    proc = runner(f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = summary(tmp_path)
    assert s["status"] == "completed" and s["error"] is None
    assert s["final"]["eval/acc"] >= 0.90, s["final"]
    assert s["steps"] == 660 and s["device"] == "cpu"
    assert s["convergence"]["conv/metric"] == "train/grad_norm"
    assert s["convergence"]["conv/kind"] in ("linear", "sublinear")
    assert "eval/acc>=0.9" in s["targets"]
    records = read_records(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records][:3] == [20, 40, 60]
    assert all(isinstance(r["step"], int) and isinstance(r["time_s"], float) for r in records)
    assert {"train/loss", "train/grad_norm", "train/update_norm", "train/lr", "time/elapsed_s"} <= set(records[0])
    assert "run folder" in proc.stdout and "completed" in proc.stdout

    # The offline wandb run, read back with wandb's own tool (no mock).
    run_dirs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    inspect = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--summary", "--json", str(run_dirs[0])],
                             text=True, capture_output=True, timeout=120, env=ENV)
    assert inspect.returncode == 0, inspect.stderr
    info = json.loads(inspect.stdout)
    text = json.dumps(info)
    assert "final/eval/acc" in text and "conv/kind" in text
    assert '"digits"' in text and '"adam"' in text  # tags / config carry the choices


def test_two_job_sweep_writes_one_folder_per_job(tmp_path):
    proc = runner("-m", "optim=sgd,adam", "task.epochs=1", "logger=none", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    for job, optim in zip(jobs, ["sgd", "adam"]):
        s = summary(job)
        assert s["status"] == "completed"
        assert (job / ".hydra" / "overrides.yaml").read_text().count(f"optim={optim}") == 1
        assert read_records(job / "metrics.jsonl")


def test_divergence_is_a_result(tmp_path):
    proc = runner("optim=sgd", "optim.lr=1e6", "logger=none", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = summary(tmp_path)
    assert s["status"] == "diverged"
    assert s["error"].startswith("diverged at step ") and s["steps"] < 660
    assert read_records(tmp_path / "metrics.jsonl")[-1]["step"] == s["steps"]


def test_a_failing_run_keeps_its_metrics_and_exits_nonzero(tmp_path):
    proc = runner("task._target_=tests.faulty.FailingClassifier", "+task.fail_at=45", "logger=none",
                  f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 1
    s = summary(tmp_path)
    assert s["status"] == "failed"
    assert s["error"].startswith("RuntimeError: boom at step 45") and "\n" not in s["error"]
    assert s["steps"] == 40 and s["final"]["train/loss"] > 0
    assert [r["step"] for r in read_records(tmp_path / "metrics.jsonl")] == [20, 40]
    assert "Traceback" in (tmp_path / "runner.log").read_text()
    assert "Traceback" not in proc.stdout + proc.stderr


def test_ctrl_c_writes_an_interrupted_summary(tmp_path):
    code, out = signal_mid_run(["task.epochs=100000", "logger=none", f"hydra.run.dir={tmp_path}"], tmp_path,
                               signal.SIGINT, ENV)
    assert code == 130, out
    metrics = tmp_path / "metrics.jsonl"
    s = summary(tmp_path)
    assert s["status"] == "interrupted"
    assert s["steps"] >= 60 and s["steps"] == read_records(metrics)[-1]["step"]


def test_bad_config_reports_every_problem_before_any_work(tmp_path):
    """Values first (no torch imported), then, once they pass, keys against their classes and the
    task's checks; either way nothing but Hydra's record of the run is written."""
    for args, needles in ((["optim.lr=-1", "device=tpu", "log_every=0"],
                           ("optim.lr=-1", "device='tpu'", "allowed: auto, cpu, cuda, cuda:N", "log_every=0")),
                          (["task.batch_size=5000", "+optim.momentun=0.9"],
                           ("task.batch_size=5000", "larger than the training set (1437)",
                            "optim.momentun: not an argument of torch.optim.SGD"))):
        proc = runner(*args, "optim=sgd", "logger=none", f"hydra.run.dir={tmp_path}")
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, out
        for needle in needles:
            assert needle in out, (needle, out)
        assert "Traceback" not in out
        assert {p.name for p in tmp_path.iterdir()} <= {".hydra", "runner.log"}


def test_unknown_option_gets_hydras_list_of_choices():
    proc = runner("optim=adamm")
    assert proc.returncode == 1
    assert "Available options" in proc.stderr and "muon" in proc.stderr


def test_help_lists_groups_and_examples():
    proc = runner("--help")
    assert proc.returncode == 0
    for needle in ("task: " + ", ".join(TASKS), "optim:", "muon", "sched:", "runner -m"):
        assert needle in proc.stdout, (needle, proc.stdout)
