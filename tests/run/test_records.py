"""What a run records about itself, read back as a user would: `summary.json`'s provenance from a
real run through the entry point, git commit and dirty flag in a temporary repository,
`runner-report`'s table of what differs between runs, and the offline wandb run of a failed,
an interrupted and a resumed run, read with wandb's own tool (`wandb leet inspect`, no mock)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import runner.report.__main__ as report
from runner.run import provenance
from runner.run.metrics import read_records, write_json_atomic
from tasks.classifier.task import Classifier
from tests.helpers import ROOT, signal_mid_run

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
TINY = ("task=gan", "task.steps=30", "log_every=10")


class BrokenClassifier(Classifier):
    """Fails in its constructor, after the config was accepted (like a missing data file)."""

    def __init__(self, *args, **kwargs):
        raise FileNotFoundError("no data in /nonexistent/MNIST/raw")


def runner(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, env=ENV, text=True,
                          capture_output=True, timeout=300)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def inspect(wandb_run: Path) -> list[dict]:
    """Every record of an offline wandb run folder, as wandb's own tool reads it."""
    proc = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(wandb_run)],
                          text=True, capture_output=True, timeout=120, env=ENV)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def of(records: list[dict], kind: str) -> list[dict]:
    return [r[kind] for r in records if r["type"] == kind]


def wandb_summary(records: list[dict]) -> dict:
    out: dict = {}
    for s in of(records, "summary"):
        out.update(s.get("update", {}))
    return out


def test_summary_and_wandb_config_record_provenance(tmp_path):
    proc = runner(*TINY, "seed=3", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = summary(tmp_path)
    p = s["provenance"]
    assert p["command"] == "runner task=gan task.steps=30 log_every=10 seed=3" and p["seed"] == 3
    assert p["versions"]["torch"] == torch.__version__ and p["versions"]["wandb"] and p["versions"]["hydra-core"]
    assert p["python"] == ".".join(map(str, sys.version_info[:3]))
    assert p["cuda"] == torch.version.cuda and p["gpu"] is None and p["cudnn"] is None  # a CPU run
    assert isinstance(p["host"], str) and p["host"] and isinstance(p["cpu"], str) and p["cpu"]
    assert isinstance(p["threads"], int) and p["threads"] == s["threads"]["intra_op"]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    code = p["git"]["code"]
    if head.returncode == 0:  # the tests run from a checkout: the code's commit is its HEAD
        assert code["commit"] == head.stdout.strip() and isinstance(code["dirty"], bool)
    else:
        assert "not in a git checkout" in code["note"]

    # The same record in the wandb run's config, and the run's status in its summary.
    (wandb_run,) = (tmp_path / "wandb").glob("offline-run-*")
    records = inspect(wandb_run)
    config = {}
    for c in [of(records, "run")[0]["config"], *of(records, "config")]:
        config.update(c.get("update", {}))
    assert config["provenance"]["command"] == p["command"] and config["provenance"]["git"] == p["git"]
    assert config["total_steps"] == 30  # known once the task is built: updated then
    final = wandb_summary(records)
    assert final["status"] == "completed" and final["exit_code"] == 0 and final["error"] is None
    assert [h["step"]["num"] for h in of(records, "history")] == [10, 20, 30]  # wandb's step is the runner's


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo), *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_git_commit_and_dirty_flag_in_a_temporary_repository(tmp_path):
    git_state = provenance.git_state.__wrapped__  # uncached: the repository changes under the test
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "__init__.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "one")
    state = git_state(repo / "pkg")
    assert state == {"root": str(repo.resolve()), "commit": _git(repo, "rev-parse", "HEAD"), "dirty": False,
                     "changed_files": 0}
    (repo / "pkg" / "__init__.py").write_text("x = 2\n")  # a tracked file modified
    assert git_state(repo / "pkg")["dirty"] is True
    _git(repo, "commit", "-q", "-am", "two")
    (repo / "new.py").write_text("")  # an untracked file counts: it may be a new task or config
    assert git_state(repo)["dirty"] is True

    # A package installed inside a checkout without being tracked (a virtual environment in
    # the repository) is not that checkout's code; a folder outside any repository says so.
    venv_pkg = repo / ".venv" / "site-packages" / "runner"
    venv_pkg.mkdir(parents=True)
    (venv_pkg / "__init__.py").write_text("")
    assert "not tracked" in git_state(venv_pkg)["note"]
    plain = tmp_path / "plain"
    plain.mkdir()
    assert "not in a git checkout" in git_state(plain)["note"]
    assert "git" in provenance.record([], 0, torch.device("cpu"), cwd=plain)  # and the record is still made


def _fake_run(folder: Path, seed: int, **changes) -> None:
    prov = provenance.record([f"seed={seed}"], seed, torch.device("cpu"), {"intra_op": 2})
    prov["git"] = {"code": {"root": "/src", "commit": "0" * 40, "dirty": False, "changed_files": 0}}
    for key, value in changes.items():
        *path, last = key.split(".")
        node = prov
        for part in path:
            node = node[part]
        node[last] = value
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 10, "time_s": 0.1, "a/x": 1.0}) + "\n")
    write_json_atomic(folder / "summary.json", {"status": "completed", "steps": 10, "final": {"a/x": 1.0},
                                                "best": {"a/x": 1.0}, "provenance": prov})


def test_report_shows_provenance_only_where_runs_differ(tmp_path, capsys):
    _fake_run(tmp_path / "same" / "0", 0)
    _fake_run(tmp_path / "same" / "1", 1)  # seeds, commands and start times differ by design
    assert report.main([str(tmp_path / "same")]) == 0
    out = capsys.readouterr().out
    assert "Where runs differ" not in out
    assert "Where runs differ" not in (tmp_path / "same" / "report" / "index.html").read_text()

    _fake_run(tmp_path / "mixed" / "0", 0)
    _fake_run(tmp_path / "mixed" / "1", 1, **{"versions.torch": "9.9.9", "threads": 8, "host": "other"})
    _fake_run(tmp_path / "mixed" / "2", 2, **{"git.code.dirty": True})
    assert report.main([str(tmp_path / "mixed")]) == 0
    out = capsys.readouterr().out
    table = out[out.index("Where runs differ"):]
    for needle in ("versions.torch", "9.9.9", "threads", "host", "other", "git.code.dirty"):
        assert needle in table, (needle, table)
    assert "versions.numpy" not in table and "python" not in table  # equal everywhere: not shown
    assert "Where runs differ" in (tmp_path / "mixed" / "report" / "index.html").read_text()


def test_a_task_that_fails_to_build_still_has_a_failed_wandb_run_saying_why(tmp_path):
    proc = runner(f"task._target_={__name__}.BrokenClassifier", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    s = summary(tmp_path)
    assert s["status"] == "failed" and s["error"].startswith("FileNotFoundError: no data in /nonexistent")
    (wandb_run,) = (tmp_path / "wandb").glob("offline-run-*")
    assert of(inspect(wandb_run), "run")[0]["run_id"] == s["wandb_id"]
    records = inspect(wandb_run)
    final = wandb_summary(records)
    assert final["status"] == "failed" and final["error"] == s["error"] and final["exit_code"] == 1
    assert of(records, "exit")[-1]["exit_code"] == 1 and not of(records, "preempting")  # failed, not preempted


def test_an_interrupted_run_is_preempted_not_failed_and_its_resumed_part_continues_its_history(tmp_path):
    args = ["task._target_=tests.faulty.SlowClassifier", "+task.pause_s=0.002", "task.epochs=null",
            "task.steps=120", "task.batch_size=32", "model.hidden=[32]", f"hydra.run.dir={tmp_path}"]
    code, out = signal_mid_run(args, tmp_path, signal.SIGTERM, ENV)
    assert code == 128 + signal.SIGTERM, out
    stopped = summary(tmp_path)
    assert stopped["status"] == "interrupted" and stopped["resumable"] and stopped["exit_code"] == 143
    step = int(re.search(r"at step (\d+)", stopped["error"])[1])
    (first,) = (tmp_path / "wandb").glob("offline-run-*")
    records = inspect(first)
    assert of(records, "preempting") and of(records, "exit")[-1]["exit_code"] == 143  # preempted: resumable
    assert wandb_summary(records)["status"] == "interrupted" and wandb_summary(records)["resumable"] is True

    proc = runner(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary(tmp_path)["status"] == "completed" and summary(tmp_path)["wandb_id"] == stopped["wandb_id"]
    (second,) = set((tmp_path / "wandb").glob(f"offline-run-*-{stopped['wandb_id']}")) - {first}
    resumed = inspect(second)
    assert of(resumed, "run")[0]["resume"] is True  # the fragment says it continues a run
    steps = [[h["step"]["num"] for h in of(r, "history")] for r in (records, resumed)]
    assert steps[0][-1] <= step < steps[1][0]  # the resumed part starts after the checkpoint: one history
    assert steps[0] + steps[1] == [r["step"] for r in read_records(tmp_path / "metrics.jsonl")]

    # README: both folders of the run go to `wandb sync` in one command (synced in start order).
    sync = subprocess.run(f"{sys.executable} -m wandb sync --dry-run {tmp_path}/wandb/offline-run-*-{stopped['wandb_id']}",
                          shell=True, text=True, capture_output=True, timeout=120, env=ENV)
    assert "Would sync 2 run(s)" in sync.stdout + sync.stderr, sync.stdout + sync.stderr


@pytest.mark.parametrize("libs", [("torch", "no-such-package-xyz")])
def test_versions_come_from_metadata_and_a_missing_one_is_none(libs):
    got = provenance.versions(libs)
    assert got["torch"] == torch.__version__.split("+")[0]
    assert got["no-such-package-xyz"] is None


def test_a_target_records_its_first_logged_step_and_the_metrics_record_before_it():
    """The crossing of a target lies in (after, step]: `after` is the step of the metric's own
    previous record (eval/acc every 50 steps here, while train/loss is logged every 10), null
    when the first record already reached it."""
    from runner.run.metrics import History

    h = History("train/loss", {"eval/acc": [0.5, 0.9], "train/loss": [1.0]})
    for step in range(10, 210, 10):
        record = {"step": step, "time_s": step / 10, "time/elapsed_s": step / 20, "train/loss": 100.0 / step}
        if step % 50 == 0:
            record["eval/acc"] = {50: 0.6, 100: 0.8, 150: 0.95, 200: 0.97}[step]
        h.add(record)
    assert h.reached == {"train/loss<=1": {"step": 100, "after": 90, "time_s": 5.0},
                         "eval/acc>=0.5": {"step": 50, "after": None, "time_s": 2.5},
                         "eval/acc>=0.9": {"step": 150, "after": 100, "time_s": 7.5}}
