"""What the terminal shows: the live bar at 80 columns (count and ETA kept, metrics give way
first, the seed visible), log files not hard-wrapped, a sweep job's one closing line, the
sweep's progress counted from job folders (jobs in other processes) and from Hydra's job hooks
(jobs in this process)."""

from __future__ import annotations

import io
import json
import os
import pickle
import time
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from rich.console import Console

from runner.common.console import for_output
from runner.common.schema import SKIPPED
from runner.run.progress import Reporter, bar_title, fit, job_line, records_after, work
import runner.sweep.summary as sweep
from tests.sweep.test_sweep import TINY, runner_here

RECORD = {"step": 200, "time/elapsed_s": 2.0, "train/loss": 0.123456, "eval/acc": 0.9722, "eval/loss": 0.0912,
          "train/grad_norm": 0.5}
LONG = "task=digits optim=adam optim.lr=0.01 sched=cosine logger=none"


def bar_line(width: int, title: str, record: dict = RECORD) -> str:
    """The bar's line as the terminal shows it after `record` (drawn once more, without the live refreshes)."""
    console = Console(width=width, force_terminal=True, record=True, file=io.StringIO())
    reporter = Reporter(console, 690, title, primary="train/grad_norm")
    reporter.update(record)
    reporter.close()
    console.export_text()  # drop what the live display wrote
    console.print(reporter.bar.make_tasks_table(reporter.bar.tasks))
    return console.export_text().rstrip("\n")


def test_the_bar_keeps_count_and_eta_at_80_columns_and_shows_the_seed_first():
    for width in (80, 60):
        line = bar_line(width, bar_title(LONG, 3))
        assert len(line) <= width, line
        assert line.startswith("seed=3 task=digits") and "200/690" in line and "ETA 0:04" in line, line
    assert bar_line(40, bar_title(LONG, 3)).rstrip().endswith("200/690  100/s  0:00 ETA 0:04")
    wide = bar_line(200, bar_title(LONG, 3))
    assert f"seed=3 {LONG}" in wide and "train/loss 0.1235  eval/acc 0.9722  eval/loss 0.0912  train/grad_norm 0.5" in wide
    assert bar_title("default", 0) == "seed=0"


def test_metrics_give_way_first_and_only_whole_ones_are_shown():
    fixed, live = "200/690  100/s  0:02 ETA 0:04", "train/loss 0.1235  eval/acc 0.9722  eval/loss 0.0912"
    assert fit(200, "seed=0", fixed, live) == (6, 30, live)  # room for everything
    n_title, n_bar, shown = fit(80, "seed=0", fixed, live)
    assert shown == "train/loss 0.1235" and n_title == 6  # the bar keeps its room only as metrics go
    assert n_title + n_bar + len(fixed) + len(shown) + 3 <= 80
    n_title, n_bar, shown = fit(80, "seed=0 " + LONG, fixed, live)
    assert (n_bar, shown) == (10, "train/loss 0.1235")  # a long title gives way to one metric
    assert n_title + n_bar + len(fixed) + len(shown) + 3 == 80
    n_title, n_bar, shown = fit(70, "seed=0 " + LONG, fixed, live)
    assert shown == "" and n_bar == 10 and n_title + n_bar + len(fixed) + 2 == 70  # below that, no metrics
    assert fit(30, "seed=0", fixed, live) == (0, 0, "")  # at last the bar: the count and ETA stay


def test_log_files_are_not_hard_wrapped():
    out = io.StringIO()
    console = for_output(Console(file=out, width=80))
    assert not console.is_terminal
    message = "failed before the first logged step: " + "x" * 150 + " (traceback in /a/long/folder/runner.log)"
    console.print(message, highlight=False)
    assert out.getvalue() == message + "\n"
    plain = io.StringIO()
    reporter = Reporter(for_output(Console(file=plain, width=80)), 690, bar_title(LONG, 1), primary="train/grad_norm")
    reporter.update({**RECORD, "step": 690})
    (first, step_line) = plain.getvalue().splitlines()
    assert first == f"seed=1 {LONG}: 690 steps"
    assert step_line.startswith("step 690/690  345 steps/s  0:02 ETA 0:00  train/loss 0.1235") and len(step_line) > 80
    terminal = Console(force_terminal=True)
    assert for_output(terminal) is terminal


def summary(**kw) -> dict:
    return {"status": "completed", "error": None, "steps": 300, "wall_time_s": 2.46, "run_dir": "/tmp/sw/1",
            "final": {"gan/dist_to_eq": 0.88095, "train/lr": 0.1}, "convergence": {"conv/metric": "gan/dist_to_eq"},
            **kw}


def test_a_sweep_job_closes_with_one_line_status_metric_time_and_folder():
    assert job_line(summary()).plain == "completed  gan/dist_to_eq 0.88095  300 steps in 2.5 s  /tmp/sw/1"
    failed = job_line(summary(status="failed", steps=5, final={}, error="RuntimeError: boom at step 5")).plain
    assert failed == "failed  5 steps in 2.5 s  RuntimeError: boom at step 5  /tmp/sw/1"


def test_a_run_without_training_steps_says_what_it_did(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s}) + "\n" for s in (4, 8, 16)))
    assert records_after(metrics, 0) == 3 and records_after(metrics, 8) == 1 and records_after(tmp_path / "no", 0) == 0
    assert work(summary(steps=0), after=3) == "3 measurements (no training steps)"
    assert work(summary(steps=2000), after=1) == "2000 steps + 1 measurement after training"
    assert work(summary(steps=2000)) == "2000 steps"


def make_job(root: Path, num: int, status: str | None = None, old: bool = False, skipped: bool = False) -> None:
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(f"- seed={num}\n")
    if status:
        (job / "summary.json").write_text(json.dumps({"status": status}))
    if skipped:
        (job / SKIPPED).touch()
    if old:
        for path in job.rglob("*"):
            os.utime(path, (time.time() - 3600,) * 2)


def test_the_watcher_counts_the_jobs_of_this_sweep_from_their_folders(tmp_path):
    make_job(tmp_path, 0, "completed")
    make_job(tmp_path, 1, "diverged")
    make_job(tmp_path, 2, "failed")
    make_job(tmp_path, 3)  # running: no summary yet
    make_job(tmp_path, 4, "completed", skipped=True)
    make_job(tmp_path, 5, "completed", old=True)  # a folder of an earlier sweep
    (tmp_path / ".submitit").mkdir()
    done, running = sweep.scan(tmp_path, time.time() - 60, {})
    assert done == Counter(completed=1, diverged=1, failed=1, skipped=1) and running == 1
    line = sweep.progress_line(done, 8, elapsed=40.0, running=running)
    assert line == "sweep 4/8 done: 1 completed, 1 diverged, 1 failed, 1 skipped · 1 running · 0:40 · ETA 0:40"
    line = sweep.progress_line(Counter(completed=2), None, elapsed=4.0, job=3)
    assert line == "sweep job 3 (of an unknown number): 2 completed, 0 diverged, 0 failed · 0:04"


def test_jobs_in_other_processes_are_counted_as_they_finish_and_the_thread_stops_at_the_end(tmp_path, capsys):
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "sweeper": {"n_trials": 3},
                                         "launcher": {"_target_": "hydra_plugins.hydra_joblib_launcher.JoblibLauncher"}}})
    callback = sweep.SweepSummary(every_s=0.02)
    callback.on_multirun_start(config)
    try:
        thread = callback.watcher[0]
        assert thread.is_alive()
        pickle.loads(pickle.dumps(callback))  # launchers send the callbacks to their workers
        make_job(tmp_path, 0, "completed")
        make_job(tmp_path, 1)
        deadline = time.time() + 10
        while "sweep 1/3 done" not in capsys.readouterr().out and time.time() < deadline:
            time.sleep(0.02)
        assert time.time() < deadline
    finally:
        callback.on_multirun_end(config)
    assert not thread.is_alive() and callback.watcher is None
    out = capsys.readouterr().out
    assert "sweep: 2 jobs" in out and "1 of 2 jobs did not finish: 1 (no summary)" in out


def test_a_sweep_in_this_process_shows_job_k_of_n_and_one_line_per_job(tmp_path, capsys):
    code, out = runner_here(capsys, "-m", *TINY, "optim.lr=0.1,1e9", "logger=none", f"hydra.sweep.dir={tmp_path}")
    assert code == 0, out
    assert "sweep job 1/2: 0 completed, 0 diverged, 0 failed" in out
    assert "sweep job 2/2: 1 completed, 0 diverged, 0 failed" in out and "ETA" in out
    assert "completed  gan/dist_to_eq " in out and "30 steps in " in out and f"  {tmp_path / '0'}\n" in out
    assert "diverged  " in out and f"{tmp_path / '1'}\n" in out
    assert out.count("┏") == 1 and "run folder:" not in out  # the sweep's table only; no table per job


def _sweep_rows() -> list[dict]:
    rows = []
    for i, (overrides, value) in enumerate([("optim=sgd seed=0", 1e-40), ("optim=momentum seed=1", 6.4e-46)]):
        summary = {"status": "completed", "final": {"obj/subopt": value, "train/loss": value}, "steps": 1000,
                   "wall_time_s": 0.2, "convergence": {"conv/metric": "obj/subopt", "conv/kind": "linear",
                                                       "conv/rate": 0.898523}}
        rows.append({"job": str(i), "overrides": ["task=objective", *overrides.split(), "logger=none"],
                     "status": "completed", "summary": summary, "skipped": False, "this_sweep": True})
    return rows


@pytest.mark.parametrize("width", [80, 120])
def test_the_sweep_table_fits_the_terminal_and_says_what_it_left_out(width):
    console = Console(width=width, file=io.StringIO(), record=True)
    console.print(sweep.sweep_table(_sweep_rows(), Path("/tmp/sweep"), console))
    text = console.export_text()
    table = [line for line in text.splitlines() if line.startswith(("┃", "│", "┏", "└"))]
    assert all(line.rstrip().endswith(("┃", "│", "┓", "┘")) for line in table), text  # nothing cut at the edge
    assert "optim=momentum" in text and "completed" in text and "linear rate" in text, text
    if width == 80:
        assert "not shown at 80 columns: train/loss, time" in text, text
    else:
        assert "train/loss" in text and "0.2 s" in text and "not shown" not in text, text


def test_a_table_rich_would_widen_past_80_columns_is_not_cut_at_the_edge():
    """Wrapped overrides and a two-line verdict: rich keeps each column's min_width and laid this
    table out one column wider than the terminal, which cut its right edge (seen at 80 columns)."""
    rows = []
    for i, (seed, lr) in enumerate([(0, 0.01), (0, 0.05), (1, 0.01), (1, 0.05)]):
        summary = {"status": "completed", "final": {"gan/dist_to_eq": 3.651}, "steps": 200, "wall_time_s": 4.6,
                   "convergence": {"conv/metric": "gan/dist_to_eq", "conv/kind": "diverging", "conv/rate": 1.00125}}
        rows.append({"job": str(i), "overrides": ["task=gan", f"seed={seed}", f"optim.lr={lr}", "logger=none",
                                                  "task.steps=200"],
                     "status": "completed", "summary": summary, "skipped": False, "this_sweep": True})
    console = Console(width=80, file=io.StringIO(), record=True)
    console.print(sweep.sweep_table(rows, Path("outputs/multirun/2026-12-02/15-09-09"), console))
    text = console.export_text()
    table = [line for line in text.splitlines() if line.startswith(("┃", "│", "┏", "└"))]
    assert all(line.rstrip().endswith(("┃", "│", "┓", "┘")) for line in table), text
    assert "diverging rate" in text and "optim.lr=0.05" in text, text
