"""A sweep in one process does not grow with its jobs (issue 12, "Also seen").

The growth was Hydra's: its basic launcher keeps every job's `JobReturn` until the sweep ends,
each holding deep copies of the job's config and of the whole `hydra` node (~130 KB a job; 0.15 MB
a job measured over 250 jobs of `task=gan task.steps=20 logger=none`). The runner's sweep callback
drops the two copies as each job ends (runner/sweep/summary.py, `on_job_end`); nothing reads them later
(Hydra's sweepers read `return_value` and `overrides`).
"""

from __future__ import annotations

import gc
import tracemalloc

import pytest
from hydra.core.utils import JobReturn, JobStatus

import runner.run.job
from tests.helpers import run_main

TINY = ("task=gan", "task.steps=5", "logger=none")


def test_the_returns_a_sweep_keeps_hold_no_config(capsys, tmp_path, monkeypatch):
    held = []
    run = runner.run.job.run

    def last_job_looks(cfg):  # the returns of the jobs before, as the launcher holds them
        held[:] = [o for o in gc.get_objects() if type(o) is JobReturn]  # type(): isinstance wakes lazy modules
        return run(cfg)

    monkeypatch.setattr(runner.run.job, "run", last_job_looks)
    code, out = run_main(capsys, "-m", *TINY, "seed=0,1,2", f"hydra.sweep.dir={tmp_path}")
    assert code == 0, out
    done = [r for r in held if r.status == JobStatus.COMPLETED]
    assert len(done) >= 2, held  # jobs 0 and 1 at least, seen from job 2
    assert all(r.cfg is None and r.hydra_cfg is None for r in done)  # before: ~130 KB of configs each


@pytest.mark.slow
def test_python_memory_per_job_of_a_sweep_in_one_process_is_a_few_kilobytes(capsys, tmp_path, monkeypatch):
    traced = []
    run = runner.run.job.run

    def measured(cfg):
        code = run(cfg)
        gc.collect()
        traced.append(tracemalloc.get_traced_memory()[0])
        return code

    monkeypatch.setattr(runner.run.job, "run", measured)
    tracemalloc.start()
    try:
        code, out = run_main(capsys, "-m", *TINY, "seed=range(0,40)", f"hydra.sweep.dir={tmp_path}")
    finally:
        tracemalloc.stop()
    assert code == 0 and len(traced) == 40, out
    per_job = (traced[-1] - traced[14]) / 25  # after the first jobs' one-off caches (imports, fonts)
    assert per_job < 20_000, per_job  # before: ~150,000 bytes a job
