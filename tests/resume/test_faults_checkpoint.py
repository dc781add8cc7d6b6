"""Faults injected into run folders, through the runner's entry point (issue 12, items 1, 2, 6, 11):
hostile, damaged and foreign checkpoints (never executed; set aside; the run starts from step 0
and is not stuck), half-written records on resume, records a fresh start would overwrite (kept
aside), and a sweep folder whose files name paths outside it (nothing outside is touched)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from runner.resume import checkpoint
from tests.helpers import OPTIMS, ROOT, SCHEDS, TASKS, build_all, compose_cfg, data_dir_for, run_main, tiny_budget

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
# Fails at its 5th step: leaves a checkpoint at step 4 and the records of steps 1-4 (a second
# start of the same config resumes at 4 and fails at step 9, checkpoint at 8).
FAILING = ("task._target_=tests.faulty.FailingClassifier", "+task.fail_at=5", "task.epochs=null", "task.steps=20",
           "task.batch_size=32", "model.hidden=[16]", "checkpoint_every=2", "log_every=1", "logger=none")
TINY = ("task=gan", "task.steps=30", "log_every=10", "logger=none")


def steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def only(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, (pattern, sorted(p.name for p in folder.iterdir()))
    return found[0]


def earlier_attempt(capsys, run_dir: Path, *extra: str) -> bytes:
    """Run FAILING into `run_dir`; returns the checkpoint it left (step 4)."""
    code, out = run_main(capsys, *FAILING, *extra, f"hydra.run.dir={run_dir}")
    assert code == 1 and steps(run_dir / "metrics.jsonl") == [1, 2, 3, 4], out
    return (run_dir / "checkpoint.pt").read_bytes()


class Hostile:
    """Unpickled, it creates the file `marker` (any code could run there)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def _edited(good: bytes, tmp: Path, **changes) -> bytes:
    """The good checkpoint with `changes` (a key given KeyError is removed)."""
    (tmp / "good.pt").write_bytes(good)
    state = torch.load(tmp / "good.pt", weights_only=True)
    state.update(changes)
    for key in [k for k, v in changes.items() if v is KeyError]:
        del state[key]
    torch.save(state, tmp / "edited.pt")
    return (tmp / "edited.pt").read_bytes()


def _saved(obj, tmp: Path) -> bytes:
    torch.save(obj, tmp / "obj.pt")
    return (tmp / "obj.pt").read_bytes()


# name -> (the bad file's bytes, made from the good checkpoint's, a scratch folder and the marker file; what the
# warning says about it)
BAD = {
    "raw pickle with code": (lambda good, tmp, m: pickle.dumps({"step": 4, "x": Hostile(m)}, protocol=2),
                             "Unsupported global: GLOBAL"),
    "torch file with code": (lambda good, tmp, m: _saved({"step": 4, "x": Hostile(m)}, tmp), "Unsupported global: GLOBAL"),
    "truncated": (lambda good, tmp, m: good[:len(good) // 2], "cannot be read"),
    "empty": (lambda good, tmp, m: b"", "cannot be read"),
    "garbage": (lambda good, tmp, m: bytes(range(256)) * 16, "cannot be read"),
    "not a mapping": (lambda good, tmp, m: _saved([1, 2, 3], tmp), "holds a list"),
    "missing keys": (lambda good, tmp, m: _edited(good, tmp, rng=KeyError, models=KeyError), "lacks rng, models"),
    "step not an int": (lambda good, tmp, m: _edited(good, tmp, step=4.0), "has step=4.0"),
    "wandb id a path": (lambda good, tmp, m: _edited(good, tmp, wandb_id="../../x"), "not a wandb run id"),
    "bad rng state": (lambda good, tmp, m: _edited(good, tmp, rng={"python": [3, [1, 2], None], "numpy": [],
                                                                   "torch": torch.zeros(3)}), "RNG state cannot"),
    "another config": (lambda good, tmp, m: _edited(good, tmp, config_digest="0123456789abcdef"),
                       "is not a checkpoint of this config (its digest: '0123456789abcdef'; this config's: "),
}


@pytest.mark.parametrize("bad", BAD)
def test_a_bad_checkpoint_is_never_run_set_aside_with_the_records_and_the_run_starts_over(tmp_path, capsys, bad):
    run_dir, marker = tmp_path / "run", tmp_path / "code-ran"
    good = earlier_attempt(capsys, run_dir)
    make, reason = BAD[bad]
    content = make(good, tmp_path, marker)
    (run_dir / "checkpoint.pt").write_bytes(content)

    code, out = run_main(capsys, *FAILING, f"hydra.run.dir={run_dir}")
    assert not marker.exists()
    assert code == 1 and "resuming" not in out and "Traceback" not in out, out
    rejected = only(run_dir, "checkpoint.pt.rejected-*")
    assert rejected.read_bytes() == content  # kept as it was
    said = f"{run_dir / 'checkpoint.pt'} "
    assert said in out and reason in out and f"set aside as {rejected.name}; starting from step 0" in out, out
    assert f"set aside as {rejected.name}" in (run_dir / "runner.log").read_text()
    assert steps(run_dir / "metrics.jsonl") == [1, 2, 3, 4]  # from step 0 again
    assert steps(only(run_dir, "metrics.jsonl.replaced-*")) == [1, 2, 3, 4]  # the earlier attempt's, kept
    assert "resumed_from" not in json.loads((run_dir / "summary.json").read_text())

    code, out = run_main(capsys, *FAILING, f"hydra.run.dir={run_dir}")  # not stuck: the next start resumes
    assert code == 1 and "resuming from the checkpoint at step 4" in out, out
    assert steps(run_dir / "metrics.jsonl") == list(range(1, 9))


def test_a_checkpoint_that_runs_code_does_not_run_it_in_the_command(tmp_path):
    """The issue's attack through `python -m runner`: a checkpoint.pt whose unpickling runs code."""
    run_dir, marker = tmp_path / "run", tmp_path / "code-ran"
    args = [sys.executable, "-m", "runner", *TINY, f"hydra.run.dir={run_dir}"]
    run_dir.mkdir()
    torch.save({"config_digest": "x", "step": 1, "x": Hostile(marker)}, run_dir / "checkpoint.pt")
    proc = subprocess.run(args, cwd=ROOT, env=ENV, text=True, capture_output=True, timeout=300)
    assert not marker.exists()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "checkpoint.pt was not read: it holds more than tensors and plain values" in proc.stdout
    assert "set aside as checkpoint.pt.rejected-" in proc.stdout
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_a_checkpoint_of_another_config_is_set_aside_not_deleted(tmp_path, capsys):
    run_dir = tmp_path / "run"
    good = earlier_attempt(capsys, run_dir)
    code, out = run_main(capsys, *FAILING, "task.fail_at=7", f"hydra.run.dir={run_dir}")  # another config
    assert code == 1 and "resuming" not in out
    assert "is not a checkpoint of this config (its digest: " in out, out
    assert only(run_dir, "checkpoint.pt.rejected-*").read_bytes() == good
    assert steps(only(run_dir, "metrics.jsonl.replaced-*")) == [1, 2, 3, 4]
    assert steps(run_dir / "metrics.jsonl") == list(range(1, 7))


def test_records_without_a_checkpoint_are_kept_aside_with_a_warning(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, _ = run_main(capsys, *FAILING, "checkpoint_every=0", f"hydra.run.dir={run_dir}")
    assert code == 1 and not (run_dir / "checkpoint.pt").exists()
    before = (run_dir / "metrics.jsonl").read_bytes()
    code, out = run_main(capsys, *FAILING, "checkpoint_every=0", f"hydra.run.dir={run_dir}")
    kept = only(run_dir, "metrics.jsonl.replaced-*")
    assert kept.read_bytes() == before
    message = f"{run_dir / 'metrics.jsonl'} holds 4 records of an earlier attempt and there is no checkpoint"
    assert message in out and f"set aside as {kept.name}; starting from step 0" in out, out
    assert message in (run_dir / "runner.log").read_text()


def test_rerun_true_keeps_the_checkpoint_and_records_it_does_not_resume(tmp_path, capsys):
    run_dir = tmp_path / "run"
    good = earlier_attempt(capsys, run_dir)
    code, out = run_main(capsys, *FAILING, "rerun=true", f"hydra.run.dir={run_dir}")
    assert code == 1 and "resuming" not in out and "rerun=true starts from step 0" in out, out
    assert only(run_dir, "checkpoint.pt.replaced-*").read_bytes() == good
    assert steps(only(run_dir, "metrics.jsonl.replaced-*")) == [1, 2, 3, 4]


def test_resume_cuts_a_half_written_last_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    earlier_attempt(capsys, run_dir)
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "time_s": 0.1, "train/lo')  # the disk filled up, or the process was killed
    code, out = run_main(capsys, *FAILING, f"hydra.run.dir={run_dir}")
    assert code == 1 and "resuming from the checkpoint at step 4" in out, out
    assert "metrics.jsonl ends in a line that is not a whole record (a write cut short): cut; resuming" in out
    assert "JSONDecodeError" not in out and not list(run_dir.glob("metrics.jsonl.*"))
    assert steps(run_dir / "metrics.jsonl") == list(range(1, 9))


def test_resume_keeps_the_readable_records_of_a_damaged_file_and_the_file_aside(tmp_path, capsys):
    run_dir = tmp_path / "run"
    earlier_attempt(capsys, run_dir)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)
    damaged = "".join([lines[0], "\x00\x00garbage\n", lines[1], "[1, 2]\n", *lines[2:]])
    (run_dir / "metrics.jsonl").write_text(damaged)
    code, out = run_main(capsys, *FAILING, f"hydra.run.dir={run_dir}")
    assert code == 1 and "resuming from the checkpoint at step 4" in out, out
    assert ("metrics.jsonl has 2 lines that are not records (line 2, 4): cut "
            "(the file as it was: metrics.jsonl.rejected-") in out
    assert only(run_dir, "metrics.jsonl.rejected-*").read_text() == damaged
    assert steps(run_dir / "metrics.jsonl") == list(range(1, 9))


def test_a_checkpoint_that_does_not_fit_the_model_fails_once_then_the_run_starts_over(tmp_path, capsys):
    """It passes every check of the file but not the model's (the code changed since it was saved)."""
    run_dir = tmp_path / "run"
    good = earlier_attempt(capsys, run_dir)
    (run_dir / "checkpoint.pt").write_bytes(_edited(good, tmp_path, models={"model": {}}))
    code, out = run_main(capsys, *FAILING, f"hydra.run.dir={run_dir}")
    assert code == 1 and "does not fit the models and optimizers this config builds" in out, out
    assert "run again to start from step 0" in json.loads((run_dir / "summary.json").read_text())["error"]
    only(run_dir, "checkpoint.pt.rejected-*")
    code, out = run_main(capsys, *FAILING, f"hydra.run.dir={run_dir}")
    assert code == 1 and "resuming" not in out and steps(run_dir / "metrics.jsonl") == [1, 2, 3, 4], out


# ---- every task, optimizer and schedule checkpoints in plain values ----------------------------
ONE_PER_CLASS: dict[str, str] = {}  # one task per task class, the default task (no download) first
for t in sorted(TASKS, key=lambda t: t != "digits"):
    ONE_PER_CLASS.setdefault(OmegaConf.load(ROOT / "conf/task" / f"{t}.yaml").get("_target_") or t, t)
CASES = [(f"task={t}",) for t in ONE_PER_CLASS.values()] + [(f"optim={o}",) for o in OPTIMS] + [
    (f"sched={s}",) for s in SCHEDS] + [
    ("task=gan", "task.game=mog", "model=mlp", "task.scheme=optimistic", "task.batch_size=16",
     "task.eval_samples=200", "task.w2_samples=50"),  # a game with snapshots and a previous field
    ("task=gan", "task.scheme=extragradient", "optim=adam"),
    ("task=gridworld", "task.method=reinforce", "task.batch_size=4", "task.horizon=20"),  # the sampler's generators
    ("task=diffusion", "model=mlp")]


@pytest.mark.parametrize("overrides", CASES, ids=" ".join)
def test_every_checkpoint_loads_with_weights_only_and_restores(tmp_path, request, overrides):
    task_name = next((o.split("=")[1] for o in overrides if o.startswith("task=")), "digits")
    extra = [*tiny_budget(compose_cfg(*overrides).task), *data_dir_for(task_name, request)]
    cfg = compose_cfg(*overrides, *extra, "device=cpu", "logger=none")
    task, opts, _ = build_all(cfg)
    for _ in range(min(3, task.total_steps)):  # exact scores: nothing to train
        task.train_step(opts, True)
    task.evaluate()  # a game keeps snapshots of its evaluations in its state
    checkpoint.save(tmp_path, "0123456789abcdef", 3, task, opts, "abc123")
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # raises on anything but plain values
    assert state["step"] == 3
    checkpoint.restore(checkpoint.load(tmp_path, "0123456789abcdef"), task, opts)


def test_saving_a_state_that_is_not_plain_names_where_it_lies(tmp_path):
    import numpy as np

    cfg = compose_cfg("task.epochs=null", "task.steps=6", "task.batch_size=8", "device=cpu", "logger=none")
    task, opts, _ = build_all(cfg)
    task.state_dict = lambda: {"pos": np.float64(1.0)}
    with pytest.raises(TypeError, match=r"checkpoint\.task\.pos \(numpy\.float64\) cannot be saved"):
        checkpoint.save(tmp_path, "0123456789abcdef", 1, task, opts, None)
    assert not (tmp_path / "checkpoint.pt").exists()


# ---- nothing read from a sweep folder names a path outside it ----------------------------------
def files_outside(root: Path, sweep: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_relative_to(sweep)}


def finished_sweep(capsys, tmp_path: Path) -> tuple[Path, Path, tuple[str, ...]]:
    """A sweep of one finished job in tmp/a/b/sweep, a folder tmp/a/x outside it that the issue's
    digest `../../../x` reaches from `.replaced/`, and the sweep's command line."""
    sweep, victim = tmp_path / "a" / "b" / "sweep", tmp_path / "a" / "x"
    (victim / "wandb").mkdir(parents=True)
    (victim / "wandb" / "keep.txt").write_text("not the runner's")
    (victim / "summary.json").write_text("{}")
    args = ("-m", *TINY, f"hydra.sweep.dir={sweep}")
    code, out = run_main(capsys, *args)
    assert code == 0, out
    return sweep, victim, args


def _edit_summary(job: Path, **changes) -> dict:
    s = json.loads((job / "summary.json").read_text())
    (job / "summary.json").write_text(json.dumps({**s, **changes}))
    return s


@pytest.mark.parametrize("digest", ["../../../x", "ABSOLUTE", "..", 123, None])
def test_a_crafted_config_digest_moves_and_deletes_nothing_outside_the_sweep(tmp_path, capsys, digest):
    sweep, victim, args = finished_sweep(capsys, tmp_path)
    digest = str(victim) if digest == "ABSOLUTE" else digest
    true = _edit_summary(sweep / "0", config_digest=digest)["config_digest"]
    (sweep / "0" / "wandb").mkdir()  # the old code removed the folder of that name at the target
    (sweep / "0" / "wandb" / "x").write_text("from the job")
    outside = files_outside(tmp_path, sweep)

    code, out = run_main(capsys, *args)
    assert files_outside(tmp_path, sweep) == outside
    assert code == 0, out
    assert "not a digest: the finished run it describes is moved to" in out, out
    moved = only(sweep / ".replaced", "unknown-*")  # kept, not overwritten
    assert json.loads((moved / "summary.json").read_text())["config_digest"] == digest
    assert (moved / "wandb" / "x").read_text() == "from the job"
    again = json.loads((sweep / "0" / "summary.json").read_text())
    assert again["status"] == "completed" and again["config_digest"] == true  # the job ran again


def test_a_replaced_folder_that_links_outside_is_not_used(tmp_path, capsys):
    sweep, victim, args = finished_sweep(capsys, tmp_path)
    _edit_summary(sweep / "0", config_digest="0123456789abcdef")  # a finished run of another config
    (sweep / ".replaced").symlink_to(victim)
    outside = files_outside(tmp_path, sweep)
    code, out = run_main(capsys, *args)
    assert files_outside(tmp_path, sweep) == outside and set(os.listdir(victim)) == {"wandb", "summary.json"}
    assert code == 1 and "is a link to outside the sweep folder" in out, out


def test_a_finished_run_linked_in_from_outside_is_not_taken_in(tmp_path, capsys):
    sweep, victim, args = finished_sweep(capsys, tmp_path)
    digest = json.loads((sweep / "0" / "summary.json").read_text())["config_digest"]
    (sweep / "0" / "summary.json").unlink()  # the job did not finish; a run of its config lies "aside"
    (victim / "summary.json").write_text(json.dumps({"status": "completed", "config_digest": digest}))
    (sweep / ".replaced").mkdir()
    (sweep / ".replaced" / digest).symlink_to(victim)
    outside = files_outside(tmp_path, sweep)
    code, out = run_main(capsys, *args)
    assert files_outside(tmp_path, sweep) == outside
    assert code == 0 and "skipped" not in out, out
    assert json.loads((sweep / "0" / "summary.json").read_text())["status"] == "completed"


def test_a_link_to_outside_in_a_job_folder_is_not_moved_along_or_written_through(tmp_path, capsys):
    sweep, victim, args = finished_sweep(capsys, tmp_path)
    _edit_summary(sweep / "0", config_digest="0123456789abcdef")
    (sweep / "0" / "phase.png").unlink()
    (sweep / "0" / "phase.png").symlink_to(victim / "summary.json")  # the new run draws phase.png
    outside = files_outside(tmp_path, sweep)
    code, out = run_main(capsys, *args)
    assert files_outside(tmp_path, sweep) == outside
    assert code == 0, out
    assert f"{sweep / '0' / 'phase.png'} is a link to {victim / 'summary.json'}, outside the sweep folder" in out
    assert not (sweep / ".replaced" / "0123456789abcdef" / "phase.png").exists()
    assert not (sweep / "0" / "phase.png").is_symlink()
