"""Stop signals at every stage of a run (issue 12, item 7), each a real signal to a real process:
while torch is imported, during start-up, while the task is built, during a diffusion run's
sampling after training, while figures are drawn and the tracker closes, and between two jobs of
a sweep. Each ends with the documented status, summary and exit code (README: Ctrl-C 130,
SIGTERM 143, SIGUSR2 140; `interrupted`, from a checkpoint where one could be saved), and a run
that had finished its work when the signal came stays completed.

Processes are `tests.faulty.Child` (forked from a server that imported torch once), paused at a
named moment by RUNNER_PAUSE_AT (runner/resume/stops.py) until the signal arrives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.run.metrics import read_records
from tests.faulty import Child
from tests.helpers import ROOT, run_main

GAN = ("task=gan", "task.scheme=extragradient", "task.steps=40", "log_every=10", "logger=none")
DIFFUSION = ("task=diffusion", "model=mlp", "task.train_steps=6", "task.steps=[2,4]", "task.samples=200",
             "task.ot_samples=100", "log_every=3", "logger=none")


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_records(run_dir / "metrics.jsonl")]


def signalled_at(tmp_path: Path, args: tuple[str, ...], moment: str, signum: int, run_dir: Path) -> tuple[int, str]:
    child = Child([*args, f"hydra.run.dir={run_dir}"], tmp_path / f"{run_dir.name}.out",
                  env={"RUNNER_PAUSE_AT": moment})
    child.wait_for(f"paused at {moment}")
    child.signal(signum)
    return child.join(), child.output()


@pytest.mark.parametrize("moment, signum", [("startup", signal.SIGTERM), ("build", signal.SIGUSR2),
                                            ("build", signal.SIGINT)])
def test_a_signal_during_start_up_ends_interrupted_with_its_exit_code(tmp_path, moment, signum):
    run_dir = tmp_path / "run"
    code, out = signalled_at(tmp_path, GAN, moment, signum, run_dir)
    expected = 130 if signum == signal.SIGINT else 128 + signum
    assert code == expected, out
    s = summary(run_dir)
    assert (s["status"], s["exit_code"], s["steps"], s["resumable"]) == ("interrupted", expected, 0, False), s
    assert s["error"] == (f"stopped by {signal.Signals(signum).name} during start-up; "
                          "no checkpoint: the next start begins at step 0")
    assert "interrupted before the first logged step" in out, out


def test_a_signal_stops_a_long_task_build_at_once(tmp_path):
    run_dir = tmp_path / "run"
    child = Child(["task._target_=tests.faulty.SlowToBuild", "+task.build_s=600", "logger=none",
                   f"hydra.run.dir={run_dir}"], tmp_path / "out")
    child.wait_for("building (tests.faulty.SlowToBuild)")
    child.signal(signal.SIGTERM)
    assert child.join(timeout=60) == 143, child.output()  # not after the 600 s the build takes
    assert summary(run_dir)["error"].startswith("stopped by SIGTERM during start-up")


def test_a_resumed_run_stopped_during_start_up_keeps_its_checkpoint_and_records(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, out = signalled_at(tmp_path, (*GAN, "checkpoint_every=100"), "record#2", signal.SIGTERM, run_dir)
    assert code == 143 and summary(run_dir)["error"] == "stopped by SIGTERM at step 20; checkpoint saved", out
    code, out = signalled_at(tmp_path, (*GAN, "checkpoint_every=100"), "build", signal.SIGTERM, run_dir)
    assert code == 143, out
    s = summary(run_dir)
    assert s["status"] == "interrupted" and s["resumable"] and steps(run_dir) == [10, 20], s
    assert s["error"] == ("stopped by SIGTERM during start-up; the checkpoint at step 20 is kept: "
                          "the next start resumes from it")
    code, out = run_main(capsys, *GAN, "checkpoint_every=100", f"hydra.run.dir={run_dir}")
    assert code == 0 and "resuming from the checkpoint at step 20" in out, out
    assert steps(run_dir) == [10, 20, 30, 40]


def test_a_signal_while_a_diffusion_run_samples_stops_it_resumable_after_training(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, out = signalled_at(tmp_path, DIFFUSION, "assess#2", signal.SIGTERM, run_dir)
    assert code == 143, out
    assert steps(run_dir) == [3, 6, 8]  # stopped at once: the second sampling run never finished
    s = summary(run_dir)
    assert s["status"] == "interrupted" and s["resumable"] and s["exit_code"] == 143, s
    assert s["error"] == ("stopped by SIGTERM during the measurements after training (the task's assess()); "
                          "the checkpoint at step 6 is kept: the next start resumes from it")
    code, out = run_main(capsys, *DIFFUSION, f"hydra.run.dir={run_dir}")
    assert code == 0 and "resuming from the checkpoint at step 6" in out, out
    assert steps(run_dir) == [3, 6, 8, 10] and summary(run_dir)["status"] == "completed"


@pytest.mark.parametrize("moment", ["figures", "tracker"])
def test_a_signal_as_a_run_finishes_leaves_it_completed(tmp_path, moment):
    run_dir = tmp_path / "run"
    code, out = signalled_at(tmp_path, GAN, moment, signal.SIGTERM, run_dir)
    assert code == 0, out
    s = summary(run_dir)
    assert (s["status"], s["exit_code"], s["steps"]) == ("completed", 0, 40), s
    assert "SIGTERM received as the run was finishing: it completed and is kept so" in out, out
    assert "┃ metric" in out and not (run_dir / "checkpoint.pt").exists(), out


def test_a_signal_between_sweep_jobs_records_the_next_job_as_interrupted_and_stops_with_the_table(tmp_path):
    child = Child(["-m", *GAN, "seed=0,1,2", f"hydra.sweep.dir={tmp_path}"], tmp_path / "sweep.out",
                  env={"RUNNER_PAUSE_AT": "tracker"})
    child.wait_for("paused at tracker")  # job 0 is closing
    child.signal(signal.SIGTERM)
    code, out = child.join(), child.output()
    assert code == 143, out
    assert summary(tmp_path / "0")["status"] == "completed"
    s = summary(tmp_path / "1")
    assert (s["status"], s["exit_code"], s["steps"]) == ("interrupted", 143, 0), s
    assert s["error"] == "stopped by SIGTERM before the run started; no checkpoint: the next start begins at step 0"
    assert not (tmp_path / "2").exists()  # never started
    assert "sweep: 2 jobs" in out and "1 of 2 jobs did not finish" in out and f"sweep folder: {tmp_path}" in out, out


def test_sigterm_while_torch_is_imported_ends_interrupted(tmp_path):
    """The `runner` command itself (no server): the signal lands while the app imports torch, before
    the run began; the run folder still gets its summary."""
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "runner", *GAN, f"hydra.run.dir={tmp_path}"], cwd=ROOT, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not (tmp_path / ".hydra" / "overrides.yaml").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.2)  # Hydra has called the app (microseconds after it wrote .hydra/); torch takes seconds
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    s = summary(tmp_path)
    assert s["status"] == "interrupted" and s["error"].startswith("stopped by SIGTERM "), s
