"""Checkpoints and resume of lane groups (runner/lanes/checkpoints.py, README "Lanes"): a lanes sweep
stopped by a signal (or killed -9 between two lanes' saves) and run again gives every job the
records and summary of its uninterrupted single run (float64: to 1e-12 relative); each lane's
checkpoint is its single run's, so a job resumes from it alone, and a lane resumes from a single
run's. Each stop is a real signal to a real process (tests.faulty.Child), at a named moment
(RUNNER_PAUSE_AT, runner/resume/stops.py)."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest

from runner.run.metrics import read_records
from tests.faulty import Child
from tests.lanes.test_lanes import SUMMARY_KEYS, close, sweep

GAN = ("task=gan", "task.scheme=optimistic", "optim=adam", "task.steps=60", "log_every=10", "task.path_every=3",
       "task.jacobian_every=20", "seed=0,1", "optim.lr=0.05,0.1")
OBJECTIVE = ("task=objective", "problem=reddi", "optim=adam", "optim.betas=[0.0,0.1]", "task.steps=60", "log_every=5",
             "optim.lr=0.1,0.2", "seed=0,1")
REINFORCE = ("task=gridworld", "task.method=reinforce", "task.batch_size=4", "task.horizon=30", "task.steps=40",
             "log_every=5", "optim=momentum", "optim.lr=0.5", "task.tau=0,0.01", "seed=0,1")
MOG = ("task=gan", "task.game=mog", "model=mlp", "model.hidden=[4]", "task.scheme=optimistic", "optim=adam",
       "task.batch_size=16", "task.eval_samples=200", "task.w2_samples=100", "task.steps=60", "log_every=10",
       "eval_every=20", "task.jacobian_every=20", "precision=fp64", "seed=0,1", "optim.lr=0.01,0.02")  # streams, snapshots
CASES = {"gan-optimistic-adam": GAN, "objective-online-adam": OBJECTIVE, "gridworld-reinforce": REINFORCE,
         "gan-mog-optimistic": MOG}


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def stopped(tmp_path: Path, folder: Path, args: tuple[str, ...], moment: str, signum: int = signal.SIGTERM,
            launcher: str = "lanes") -> tuple[int, str]:
    """`runner -m ARGS` in a process of its own, paused at `moment` and sent `signum` there."""
    child = Child(["-m", *args, "logger=none", f"hydra/launcher={launcher}", f"hydra.sweep.dir={folder}"],
                  tmp_path / f"{folder.name}.out", env={"RUNNER_PAUSE_AT": moment})
    child.wait_for(f"paused at {moment}")
    child.signal(signum)
    return child.join(), child.output()


def killed(tmp_path: Path, folder: Path, args: tuple[str, ...], moment: str) -> str:
    child = Child(["-m", *args, "logger=none", "hydra/launcher=lanes", f"hydra.sweep.dir={folder}"],
                  tmp_path / f"{folder.name}.out", env={"RUNNER_PAUSE_AT": moment})
    child.wait_for(f"paused at {moment}")
    child.signal(signal.SIGKILL)
    child.join()
    return child.output()


def same_as(reference: Path, folder: Path, jobs: str) -> None:
    """Every job of `folder` has the records and summary of `reference`'s job."""
    for job in jobs:
        rb, rl = read_records(reference / job / "metrics.jsonl"), read_records(folder / job / "metrics.jsonl")
        assert [r["step"] for r in rb] == [r["step"] for r in rl], job
        scale = {k: max(abs(r[k]) for r in rb if k in r and math.isfinite(r[k])) for k in rb[0]}
        for x, y in zip(rb, rl):
            close(x, y, f"job {job} step {x['step']}", scale)
        sb, sl = summary(reference / job), summary(folder / job)
        close({k: sb.get(k) for k in SUMMARY_KEYS}, {k: sl.get(k) for k in SUMMARY_KEYS}, f"job {job} summary", scale)
        assert not (folder / job / "checkpoint.pt").exists()


@pytest.mark.parametrize("case", CASES)
def test_a_lane_group_stopped_by_a_signal_resumes_every_lane_exactly(capsys, tmp_path, case):
    args = CASES[case]
    code, _ = sweep(capsys, tmp_path / "basic", *args)  # uninterrupted single runs
    assert code == 0
    lanes = tmp_path / "lanes"
    code, out = stopped(tmp_path, lanes, args, "record#13")  # a record of the group's third or fourth log step
    assert code == 143, out
    at = {summary(lanes / j)["error"] for j in "0123"}
    assert len(at) == 1 and at.pop().endswith("; checkpoint saved"), out
    for job in "0123":
        s = summary(lanes / job)
        assert (s["status"], s["exit_code"], s["resumable"]) == ("interrupted", 143, True), s
    code, out = sweep(capsys, lanes, *args, "hydra/launcher=lanes")
    assert code == 0 and "4 jobs as one batched computation, resumed at step" in out, out
    assert out.count("resuming from the checkpoint at step") == 4, out
    same_as(tmp_path / "basic", lanes, "0123")


def test_a_lanes_checkpoint_resumes_as_its_single_run_and_a_single_runs_as_a_lane(capsys, tmp_path):
    code, _ = sweep(capsys, tmp_path / "basic", *GAN)
    assert code == 0
    a, b = tmp_path / "lanes-then-basic", tmp_path / "basic-then-lanes"
    code, out = stopped(tmp_path, a, GAN, "record#9")
    assert code == 143, out
    code, out = sweep(capsys, a, *GAN)  # the basic launcher: each job alone, from its lane's checkpoint
    assert code == 0 and out.count("resuming from the checkpoint at step 30") == 4, out
    same_as(tmp_path / "basic", a, "0123")
    code, out = stopped(tmp_path, b, GAN, "record#3", launcher="basic")  # the first job stops at step 30
    assert code == 143, out
    code, out = sweep(capsys, b, *GAN, "hydra/launcher=lanes")
    assert code == 0 and "lanes: 1 jobs as one batched computation, resumed at step 30" in out, out
    assert "lanes: 3 jobs as one batched computation\n" in out, out
    same_as(tmp_path / "basic", b, "0123")


def test_a_kill_between_two_lanes_saves_loses_nothing_and_each_lane_resumes_where_it_saved(capsys, tmp_path):
    args = (*OBJECTIVE, "checkpoint_every=20")
    code, _ = sweep(capsys, tmp_path / "basic", *OBJECTIVE)
    assert code == 0
    lanes = tmp_path / "lanes"
    out = killed(tmp_path, lanes, args, "lane_checkpoint#6")  # the second save (step 40): two lanes saved
    assert not any((lanes / j / "summary.json").exists() for j in "0123"), out
    assert all(read_records(lanes / j / "metrics.jsonl")[-1]["step"] == 40 for j in "0123")
    code, out = sweep(capsys, lanes, *args, "hydra/launcher=lanes")
    assert code == 0, out
    assert "2 jobs as one batched computation, resumed at step 20" in out, out
    assert "2 jobs as one batched computation, resumed at step 40" in out, out
    same_as(tmp_path / "basic", lanes, "0123")
    assert not list(lanes.glob("*/metrics.jsonl.*")) and not list(lanes.glob("*/checkpoint.pt.*"))


def test_a_lane_that_diverged_before_the_stop_ends_diverged_and_the_others_resume(capsys, tmp_path):
    args = ("task=objective", "task.steps=200", "log_every=10", "optim.lr=0.5,2.5", "seed=0,1")
    code, _ = sweep(capsys, tmp_path / "basic", *args)
    assert code == 0 and summary(tmp_path / "basic" / "2")["status"] == "diverged"
    lanes = tmp_path / "lanes"
    code, out = stopped(tmp_path, lanes, args, "record#30", signum=signal.SIGUSR2)  # after the lr=2.5 lanes diverged
    assert code == 140, out
    assert [summary(lanes / j)["status"] for j in "0123"] == ["interrupted", "interrupted", "diverged", "diverged"]
    assert not (lanes / "2" / "checkpoint.pt").exists() and (lanes / "0" / "checkpoint.pt").exists()
    code, out = sweep(capsys, lanes, *args, "hydra/launcher=lanes")
    assert code == 0 and out.count("skipped: this config already finished") == 2, out
    same_as(tmp_path / "basic", lanes, "0123")
