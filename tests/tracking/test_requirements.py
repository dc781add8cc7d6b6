"""Each wandb run's requirements.txt is the list wandb itself would write, made once per process
(runner/tracking/tracker.py `requirements`), and is in the run's transaction log for `wandb sync`."""

from __future__ import annotations

import pytest

from runner.tracking import tracker
from runner.tracking.tracker import WandbTracker

wandb = pytest.importorskip("wandb")


def offline(tmp_path, name: str) -> WandbTracker:
    run_dir = tmp_path / name
    run_dir.mkdir()
    return WandbTracker(run_dir, {"seed": 0}, name, [], "test", "offline", alongside=True)


def test_requirements_as_wandb_writes_them_listed_once(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(project="test", mode="offline", dir=str(tmp_path), reinit="create_new",
                     settings=wandb.Settings(console="off", silent=True, x_disable_stats=True))
    theirs = run.dir
    run.finish()
    listed = []
    real = tracker.requirements.__wrapped__
    tracker.requirements.cache_clear()
    monkeypatch.setattr(tracker, "requirements", tracker.functools.cache(lambda: listed.append(1) or real()))
    ours = [offline(tmp_path, f"job{k}") for k in range(2)]
    folders = [t.folder for t in ours]
    for t in ours:
        t.finish(0)
    assert len(listed) == 1  # the second run reuses the list
    want = (tmp_path / theirs / "requirements.txt").read_text()
    assert want.count("==") > 20 and "wandb==" in want
    for folder in folders:
        assert (folder / "files" / "requirements.txt").read_text() == want
        log = next(folder.glob("*.wandb")).read_bytes()
        assert log.count(b"requirements.txt") == 1  # recorded for `wandb sync`, as wandb records its own
