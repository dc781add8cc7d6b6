"""`hydra/launcher=lanes_slurm` (hydra_plugins/runner_lanes/slurm_launcher.py, README "Lanes") through
submitit's real SLURM executor, tests/fake_slurm.py standing in for SLURM's commands: one SLURM job
per lane group (a refused group's jobs one each), every job's folder as `hydra/launcher=lanes`
writes it, a SIGUSR2 in the middle of a lane group (SLURM's warning before preemption) followed by
submitit's requeue resuming every lane exactly, and one clear line when nothing can be submitted."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import fake_slurm
from tests.lanes.test_lanes import hydra_file, sweep
from tests.lanes.test_lanes_resume import GAN, OBJECTIVE, same_as, summary

MIXED = ("task=objective", "optim=adam,lion", "seed=0,1", "task.steps=40", "log_every=10")  # lion: refused as lanes


@pytest.fixture
def slurm_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The fake SLURM commands first on PATH (their folder); its jobs still running at the end are killed."""
    states = fake_slurm.install(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{states.parent}:{os.environ['PATH']}")
    yield states.parent
    fake_slurm.stop_all(states)


def slurm_jobs(sweep_dir: Path) -> list[Path]:
    """The SLURM jobs submitted: submitit's folders that hold a job's pickle (`<id>`, or `<id>_<task>` for
    each task of an array job)."""
    return sorted(p.parent for p in (sweep_dir / ".submitit").glob("*/*_submitted.pkl"))


def job_logs(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(folder.glob("*_log.*")))


def test_one_slurm_job_per_lane_group_and_each_job_folder_as_the_lanes_launcher_writes_it(capsys, tmp_path, slurm_bin):
    code, _ = sweep(capsys, tmp_path / "lanes", *MIXED, "hydra/launcher=lanes")
    assert code == 0
    folder = tmp_path / "slurm"
    code, out = sweep(capsys, folder, *MIXED, "hydra/launcher=lanes_slurm")
    assert code == 0, out
    assert "lanes_slurm: 2 jobs submitted one per SLURM job: optim._target_=pytorch_optimizer.Lion" in out, out
    assert "lanes_slurm: 4 jobs in 3 SLURM jobs (1 lane group, 2 alone)" in out, out
    jobs = slurm_jobs(folder)
    assert len(jobs) == 3, jobs
    assert sum("lanes: 2 jobs as one batched computation" in job_logs(j) for j in jobs) == 1
    same_as(tmp_path / "lanes", folder, "0123")
    lanes = tmp_path / "lanes"
    for job in "0123":
        for name in ("overrides.yaml", "config.yaml"):
            assert hydra_file(folder / job, name, folder) == hydra_file(lanes / job, name, lanes), (job, name)
        assert summary(folder / job)["status"] == "completed"
    assert "sweep: 4 jobs" in out, out


def _submitted_pids(sweep_dir: Path) -> list[int]:
    """The processes running a submitted job: `python -u -m submitit.core._submit FOLDER` on this sweep's
    folder (not the fake srun that started it, whose arguments name it too)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = any(str(sweep_dir).encode() in c for c in cmd)
        if ours and b"submitit.core._submit" in cmd[1:4] and b"srun" not in cmd:
            pids.append(int(proc.name))
    return pids


def signal_when_paused(sweep_dir: Path, states: Path, moment: str, signum: int) -> list[int]:
    """In the background, while the sweep is submitted and waited for in this process: once a SLURM job
    says it paused at `moment` (RUNNER_PAUSE_AT, in its log), send it `signum`. Returns the list of the
    pids signalled, filled then. A job that never pauses within 120 s is killed, so the sweep ends."""
    sent: list[int] = []

    def watch() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            if (sweep_dir / ".submitit").is_dir() and any(f"paused at {moment}" in job_logs(j)
                                                          for j in slurm_jobs(sweep_dir)):
                sent.extend(_submitted_pids(sweep_dir))
                for pid in sent:
                    os.kill(pid, signum)
                return
            time.sleep(0.05)
        fake_slurm.stop_all(states)

    threading.Thread(target=watch, daemon=True).start()
    return sent


def test_a_lane_group_preempted_on_slurm_is_requeued_and_resumes_every_lane_exactly(capsys, tmp_path, slurm_bin,
                                                                                      monkeypatch):
    code, _ = sweep(capsys, tmp_path / "lanes", *OBJECTIVE, "hydra/launcher=lanes")  # uninterrupted
    assert code == 0
    folder = tmp_path / "slurm"
    # record#29: during the group's eighth log step (step 40 of 60, 4 lanes logging every 5); the requeued
    # job, resumed after it, writes 16 records, so it does not pause again. Only the SLURM job pauses:
    # this process submits and waits, it runs no job.
    monkeypatch.setenv("RUNNER_PAUSE_AT", "record#29")
    sent = signal_when_paused(folder, slurm_bin / "states", "record#29", signal.SIGUSR2)
    code, out = sweep(capsys, folder, *OBJECTIVE, "hydra/launcher=lanes_slurm")
    (job,) = slurm_jobs(folder)
    logs = job_logs(job)
    assert code == 0 and len(sent) == 1, out + logs
    assert "this job is preempted" in logs and f"Requeued job {job.name}" in logs, logs
    assert logs.count("lanes: 4 jobs as one batched computation") == 2, logs
    assert "lanes: 4 jobs as one batched computation, resumed at step 40" in logs, logs
    same_as(tmp_path / "lanes", folder, "0123")
    assert all(summary(folder / j)["resumed_from"] == 40 for j in "0123")
    assert "sweep: 4 jobs" in out and "did not finish" not in out, out


@pytest.mark.slow  # ~45 s, most of it submitit's own waits (sacct at growing intervals, then 15 s for a result)
def test_a_slurm_job_killed_without_results_is_said_and_the_sweep_table_still_comes(capsys, tmp_path, slurm_bin,
                                                                                     monkeypatch):
    folder = tmp_path / "slurm"
    monkeypatch.setenv("RUNNER_PAUSE_AT", "record#1")
    # SIGKILL: as SLURM ends a job past its time limit, or a node that fails
    sent = signal_when_paused(folder, slurm_bin / "states", "record#1", signal.SIGKILL)
    code, out = sweep(capsys, folder, "task=objective", "seed=0,1", "task.steps=20", "log_every=10",
                      "hydra/launcher=lanes_slurm")
    (job,) = slurm_jobs(folder)
    assert code == 1 and len(sent) == 1, out
    assert f"lanes_slurm: SLURM job {job.name} (jobs 0, 1) ended without its results: Job {job.name}" in out, out
    assert "has not produced any output" in out and "sweep: 2 jobs" in out and "2 of 2 jobs did not finish" in out, out


class Both:
    """capsys for run_main, which reads `.out`: stdout and stderr (where Hydra prints a launcher's error)."""

    def __init__(self, capsys: pytest.CaptureFixture):
        self.capsys = capsys

    def readouterr(self):
        got = self.capsys.readouterr()
        return type(got)(got.out + got.err, "")


def test_a_sweep_that_cannot_be_submitted_says_why_and_runs_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no srun, no sbatch
    capsys = Both(capsys)
    code, out = sweep(capsys, tmp_path / "none", *GAN, "hydra/launcher=lanes_slurm")
    assert code == 1 and "hydra/launcher=lanes_slurm: cannot submit the 1 SLURM job" in out, out
    assert "choose hydra/launcher=lanes to run it on this machine" in out, out
    bin_dir = tmp_path / "bin"
    fake_slurm.install(bin_dir)
    (bin_dir / "sbatch").write_text('#!/bin/sh\necho "sbatch: error: invalid partition specified: nope" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    code, out = sweep(capsys, tmp_path / "refused", *GAN, "hydra/launcher=lanes_slurm", "hydra.launcher.partition=nope")
    assert code == 1, out
    assert ("hydra/launcher=lanes_slurm: sbatch did not take the 1 SLURM job: sbatch: error: invalid partition "
            "specified: nope (settings: hydra.launcher.partition=nope") in out, out
    assert not any((tmp_path / "refused").glob("*/summary.json"))
