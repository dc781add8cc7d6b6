"""Faults in a run's life, through the runner's entry point (issue 12, items 4, 5, 8, 12): kill -9 at
named moments from start-up to the tracker's finish (the next start resumes or skips, records are
never lost or doubled), a full disk (a real small tmpfs where the platform allows one, and writes
failing after N bytes in this process), two processes in one run folder, and NaN/Inf in strict
JSON that Python's strict parser and jq read the same.

A process to kill is a `tests.faulty.Child` (a real process, forked from a server that imported
torch once) paused at a moment by RUNNER_PAUSE_AT (runner/resume/stops.py); the next start runs in this
process (tests.helpers.run_main), which is faster still."""

from __future__ import annotations

import errno
import json
import math
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from runner.common import strict_json
from runner.run.metrics import read_records
from tests.faulty import Child, disk_fills
from tests.helpers import run_main

GAN = ("task=gan", "task.scheme=extragradient", "task.steps=40", "log_every=10", "logger=none")  # converges, figures


def steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in read_records(run_dir / "metrics.jsonl")]


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def strict_lines(path: Path) -> list[dict]:
    """Every line of a metrics.jsonl through a parser that refuses NaN and Infinity; each ends in a newline."""
    data = path.read_text()
    assert data.endswith("\n") or not data, data[-200:]
    return [json.loads(line, parse_constant=refuse) for line in data.splitlines()]


def refuse(name: str):
    raise ValueError(f"not strict JSON: {name}")


def killed_at(tmp_path: Path, moment: str, *args: str) -> Path:
    """Start GAN ARGS in tmp_path/run, pause it at `moment`, kill -9 it; returns the run folder."""
    run_dir = tmp_path / "run"
    child = Child([*GAN, *args, f"hydra.run.dir={run_dir}"], tmp_path / "first.out", env={"RUNNER_PAUSE_AT": moment})
    child.wait_for(f"paused at {moment}")
    child.proc.kill()
    assert child.join() == -9
    return run_dir


# ---- item 4: resumable or finished at every instant --------------------------------------------
@pytest.mark.parametrize("moment, then", [
    ("startup", "from 0"), ("build", "from 0"),      # start-up: nothing of a run written yet
    ("record#3", "resumes 20"),                      # mid-run, checkpoints at 10 and 20
    ("trained", "resumes 40"), ("figures", "resumes 40"),  # after training: the checkpoint of its last step
    ("summary", "skipped"), ("tracker", "skipped"),  # the summary is on disk: finished
])
def test_a_kill_at_any_moment_leaves_a_run_that_resumes_or_is_finished(tmp_path, capsys, moment, then):
    run_dir = killed_at(tmp_path, moment, "checkpoint_every=10")
    before = (run_dir / "metrics.jsonl").read_bytes() if (run_dir / "metrics.jsonl").exists() else b""
    code, out = run_main(capsys, *GAN, "checkpoint_every=10", f"hydra.run.dir={run_dir}")
    assert code == 0, out
    if then == "skipped":
        assert "skipped: this config already finished" in out, out
        assert (run_dir / "metrics.jsonl").read_bytes() == before  # not a byte rewritten
    elif then.startswith("resumes"):
        assert f"resuming from the checkpoint at step {then.split()[1]}" in out, out
    else:
        assert "resuming" not in out and not before, out
    s = summary(run_dir)
    assert s["status"] == "completed" and s["steps"] == 40 and not s["resumable"], s
    assert steps(run_dir) == [10, 20, 30, 40]  # every record once
    assert not (run_dir / "checkpoint.pt").exists() and (run_dir / "phase.png").exists()


def test_a_kill_while_a_diffusion_run_samples_resumes_after_its_training(tmp_path, capsys):
    """Most of a diffusion run is its sampling after training (assess()): a kill there resumes from
    the checkpoint of the last training step and samples again; no record twice."""
    args = ["task=diffusion", "model=mlp", "task.train_steps=6", "task.steps=[2,4]", "task.samples=200",
            "task.ot_samples=100", "log_every=3", "logger=none"]
    run_dir = tmp_path / "run"
    child = Child([*args, f"hydra.run.dir={run_dir}"], tmp_path / "first.out", env={"RUNNER_PAUSE_AT": "assess#2"})
    child.wait_for("paused at assess#2")  # one sampling run done and recorded, the second under way
    child.proc.kill()
    child.join()
    assert steps(run_dir) == [3, 6, 8]
    code, out = run_main(capsys, *args, f"hydra.run.dir={run_dir}")
    assert code == 0 and "resuming from the checkpoint at step 6" in out, out
    assert steps(run_dir) == [3, 6, 8, 10] and summary(run_dir)["status"] == "completed"


# ---- item 8: one process at a time in a run folder ----------------------------------------------
def files(run_dir: Path) -> dict[str, bytes]:
    """The folder's files but Hydra's own (.hydra/, runner.log: Hydra writes them before any code of ours)."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.parts[len(run_dir.parts)] not in (".hydra", "runner.log")}


def test_a_second_process_in_a_held_folder_says_who_holds_it_and_touches_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    holder = Child([*GAN, f"hydra.run.dir={run_dir}"], tmp_path / "holder.out", env={"RUNNER_PAUSE_AT": "record#2"})
    holder.wait_for("paused at record#2")
    before, record = files(run_dir), (run_dir / ".hydra" / "overrides.yaml").read_bytes()
    for other in ((), ("seed=1",)):  # the same config, and another one
        code, out = run_main(capsys, *GAN, *other, f"hydra.run.dir={run_dir}")
        assert code == 1, out
        assert f"{run_dir} is in use by pid {holder.pid} on " in out and "left the folder as it is" in out, out
        assert files(run_dir) == before
    holder.signal(signal.SIGTERM)  # it stops, and puts back the .hydra/ record Hydra rewrote for seed=1
    assert holder.join() == 143
    assert (run_dir / ".hydra" / "overrides.yaml").read_bytes() == record
    assert "config.yaml, hydra.yaml, overrides.yaml rewritten by another process started into this folder while " \
           "this run held it: put back" in " ".join(holder.output().split())
    assert steps(run_dir) == [10, 20] and (run_dir / ".lock").read_bytes() == b""  # released: emptied


def test_the_lock_of_a_killed_process_is_taken_over_with_a_message(tmp_path, capsys):
    run_dir = killed_at(tmp_path, "record#2")
    pid = json.loads((run_dir / ".lock").read_text())["pid"]
    code, out = run_main(capsys, *GAN, f"hydra.run.dir={run_dir}")
    assert code == 0 and f"the lock of pid {pid} on " in out and "ended without releasing it: taken over" in out, out
    assert steps(run_dir) == [10, 20, 30, 40] and (run_dir / ".lock").read_bytes() == b""


def test_two_sweeps_into_one_folder_run_each_job_once(tmp_path, capsys):
    """Each job folder is locked: a job that another sweep is running is refused (exit 1, the
    holder named), the others run; no job's records are interleaved or doubled."""
    sweep = ["-m", "task._target_=tests.faulty.SlowClassifier", "+task.pause_s=0.005", "task.epochs=null",
             "task.steps=60", "task.batch_size=32", "model.hidden=[16]", "log_every=10", "seed=0,1", "logger=none",
             f"hydra.sweep.dir={tmp_path}"]
    first = Child(sweep, tmp_path / "first.out", env={"RUNNER_PAUSE_AT": "record#1"})
    first.wait_for("paused at record#1")  # in job 0, which holds its folder
    code, out = run_main(capsys, *sweep)  # the same sweep, started while the first runs
    assert code == 1 and f"{tmp_path / '0'} is in use by pid {first.pid} on " in out, out
    assert summary(tmp_path / "1")["status"] == "completed" and not (tmp_path / "0" / "summary.json").exists()
    first.signal(signal.SIGTERM)  # the first sweep stops in job 0 (checkpoint) and never reaches job 1
    assert first.join() == 143
    code, out = run_main(capsys, *sweep)
    assert code == 0 and "resuming from the checkpoint at step 10" in out and "skipped" in out, out
    for job in ("0", "1"):
        assert summary(tmp_path / job)["status"] == "completed"
        assert steps(tmp_path / job) == [10, 20, 30, 40, 50, 60], job


# ---- item 5: a full disk --------------------------------------------------------------------------
LONG = ("task=gan", "task.scheme=extragradient", "task.steps=3000", "log_every=1", "logger=none")  # ~1 MB of records
DISK_FULL = "disk full (ENOSPC) writing {path}: the run stopped at step {at}; records up to step {last} are in {path}"


def stopped_at(out: str, run_dir: Path) -> tuple[int, int]:
    """(step at which the run stopped, last step kept) from the run's own message, checked against the file."""
    import re

    found = re.search(r"the run stopped at step (\d+); records up to step (\d+) are in", out)
    assert found, out
    at, last = int(found[1]), int(found[2])
    text = " ".join(out.split())
    assert "disk full (ENOSPC" in text and f"are in {run_dir / 'metrics.jsonl'}" in text, out
    assert [r["step"] for r in strict_lines(run_dir / "metrics.jsonl")][-1] == last
    return at, last


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs, or a skip where this process may not mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    import os

    st = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - leave))
    return filler


def test_a_full_disk_stops_the_run_with_whole_lines_a_summary_and_a_clear_message(small_disk, capsys):
    run_dir = small_disk / "run"
    filler = fill(small_disk, leave=450 << 10)  # the summary's reserve (256 KiB), .hydra/, then ~150 KB of records
    code, out = run_main(capsys, *LONG, "checkpoint_every=100", f"hydra.run.dir={run_dir}")
    assert code == 1, out
    at, last = stopped_at(out, run_dir)  # at a record (at = last + 1) or a checkpoint (torch.save's error)
    assert at in (last, last + 1) and 100 < last < 3000
    s = summary(run_dir)  # written in the space set aside for it
    assert s["status"] == "interrupted" and s["resumable"] and s["exit_code"] == 1, s
    assert "the checkpoint is kept: the next start resumes from it" in s["error"]
    stopped = (run_dir / "summary.json").read_bytes()

    # Resuming on the still-full disk: it stops again, the interrupted summary is never lost
    code, out = run_main(capsys, *LONG, "checkpoint_every=100", f"hydra.run.dir={run_dir}")
    assert code == 1 and "resuming from the checkpoint" in out, out
    s = summary(run_dir)
    assert s["status"] == "interrupted" and s["resumable"] or (run_dir / "summary.json").read_bytes() == stopped
    strict_lines(run_dir / "metrics.jsonl")

    filler.unlink()  # space again: the run resumes and completes, every step once
    code, out = run_main(capsys, *LONG, "checkpoint_every=100", f"hydra.run.dir={run_dir}")
    assert code == 0, out
    assert steps(run_dir) == list(range(1, 3001)) and summary(run_dir)["status"] == "completed"


@pytest.mark.parametrize("code, problem", [(errno.ENOSPC, "disk full (ENOSPC)"),
                                           (errno.EROFS, "read-only file system (EROFS)")])
def test_a_write_cut_short_by_the_disk_is_cut_back_to_its_last_whole_line(tmp_path, capsys, code, problem):
    run_dir = tmp_path / "run"
    with disk_fills(run_dir / "metrics.jsonl", after=20_000, code=code):  # a short write, then the error
        exit_code, out = run_main(capsys, *LONG, f"hydra.run.dir={run_dir}")
    assert exit_code == 1, out
    records = run_dir / "metrics.jsonl"
    last = [r["step"] for r in strict_lines(records)][-1]
    assert records.stat().st_size < 20_000
    s = summary(run_dir)
    assert s["status"] == "failed" and not s["resumable"] and s["steps"] == last, s
    assert s["error"] == DISK_FULL.replace("disk full (ENOSPC)", problem).format(path=records, at=last + 1, last=last)
    assert s["error"] in " ".join(out.split()), out


def test_resuming_on_a_full_disk_keeps_the_summary_records_and_checkpoint_it_found(tmp_path, capsys):
    run_dir = tmp_path / "run"
    with disk_fills(run_dir / "metrics.jsonl", after=20_000):
        code, _ = run_main(capsys, *LONG, "checkpoint_every=10", f"hydra.run.dir={run_dir}")
    assert code == 1 and summary(run_dir)["status"] == "interrupted"
    found = {name: (run_dir / name).read_bytes() for name in ("summary.json", "checkpoint.pt")}
    with disk_fills(run_dir, after=0):  # nothing more can be written in the folder
        code, out = run_main(capsys, *LONG, "checkpoint_every=10", f"hydra.run.dir={run_dir}")
    assert code == 1 and "no summary of this run (the previous one is kept as it was)" in " ".join(out.split()), out
    assert {name: (run_dir / name).read_bytes() for name in found} == found
    strict_lines(run_dir / "metrics.jsonl")
    code, out = run_main(capsys, *LONG, "checkpoint_every=10", f"hydra.run.dir={run_dir}")
    assert code == 0 and steps(run_dir) == list(range(1, 3001)), out


def test_an_error_closing_the_records_still_writes_the_summary(tmp_path, capsys, monkeypatch):
    import os

    real = os.close

    def close(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        real(fd)
        if path.endswith("metrics.jsonl"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "close", close)
    code, out = run_main(capsys, *GAN, f"hydra.run.dir={tmp_path}")
    monkeypatch.undo()
    assert code == 0 and summary(tmp_path)["status"] == "completed", out
    assert f"closing {tmp_path / 'metrics.jsonl'}: [Errno 5] Input/output error" in out, out


# ---- item 12: strict JSON -------------------------------------------------------------------------
def test_nan_and_infinity_are_strict_json_that_python_and_jq_read_the_same(tmp_path, capsys):
    code, out = run_main(capsys, "task=gan", "task.steps=200", "optim=sgd", "optim.lr=1e9", "log_every=10",
                         "logger=none", f"hydra.run.dir={tmp_path}")
    assert code == 0 and summary(tmp_path)["status"] == "diverged", out
    lines = strict_lines(tmp_path / "metrics.jsonl")
    marked = [r for r in lines if "nonfinite" in r]
    assert marked and all(r[k] is None and word in ("nan", "inf", "-inf")
                          for r in marked for k, word in r["nonfinite"].items())
    back = read_records(tmp_path / "metrics.jsonl")  # the runner's reader maps them back
    assert all(not math.isfinite(back[i][k]) for i, r in enumerate(lines) for k in r.get("nonfinite", {}))
    assert all("nonfinite" not in r for r in back)
    raw = json.loads((tmp_path / "summary.json").read_text(), parse_constant=refuse)
    assert raw["final"]["nonfinite"] and all(raw["final"][k] is None for k in raw["final"]["nonfinite"])
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    for name in ("metrics.jsonl", "summary.json"):
        proc = subprocess.run(["jq", "-c", ".", str(tmp_path / name)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "e+308" not in proc.stdout  # jq reads a bare Infinity as the largest double
    proc = subprocess.run(["jq", "-c", "select(.nonfinite) | .nonfinite", str(tmp_path / "metrics.jsonl")],
                          capture_output=True, text=True)
    assert [json.loads(line) for line in proc.stdout.splitlines()] == [r["nonfinite"] for r in marked]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_strict_json_round_trips_non_finite_values_at_any_depth(value):
    obj = {"final": {"a/x": value, "a/y": 1.0}, "list": [value, 2.0], "nested": {"deep": {"v": value}}, "ok": 3}
    text = json.dumps(strict_json.strict(obj), allow_nan=False)
    back = strict_json.decode(json.loads(text, parse_constant=refuse))
    word = "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    assert json.loads(text)["final"]["nonfinite"] == {"a/x": word}
    same = (lambda v: math.isnan(v)) if math.isnan(value) else (lambda v: v == value)
    assert same(back["final"]["a/x"]) and same(back["nested"]["deep"]["v"]) and back["list"] == [None, 2.0]
    assert strict_json.encode({"step": 1, "a/x": value}) == json.dumps({"step": 1, "a/x": None, "nonfinite": {"a/x": word}})
