"""Readers of run folders under hostile or broken files (issue 12, items 3, 9 and 13): one bad
file in a folder of real runs, then the real entry points: `runner-report` (runner.report.__main__:main)
reports every readable run and lists the unreadable one with why, with no traceback and without
running anything or reading outside the folder; a sweep whose job's summary.json is corrupted
lists that job as `unreadable: <why>` in its table and exits 1 (in this process and with joblib).
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.experimental.callback import Callback

import runner.__main__ as cli
from runner.report.__main__ import main
from runner.report.results import read_run
from runner.run.progress import records_after
import runner.sweep.summary as sweep
from tests.helpers import ROOT

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TINY = ("task=gan", "task.steps=40", "log_every=5", "logger=none")


class CorruptSummary(Callback):
    """A Hydra callback that overwrites job `job`'s summary.json with `text` once the job has ended
    (before the sweep's own callback reads it: Hydra calls on_job_end in reverse order)."""

    def __init__(self, job: int = 0, text: str = "{not json"):
        self.job, self.text = job, text

    def on_job_end(self, config, job_return, **kwargs) -> None:
        if config.hydra.job.num == self.job:
            (Path(config.hydra.runtime.output_dir) / "summary.json").write_text(self.text)


def runner_here(*args: str) -> tuple[int, str]:
    """`runner ARGS` through the console script's function, in this process (torch is imported
    already: seconds faster than a subprocess)."""
    GlobalHydra.instance().clear()
    cli._exit_codes.clear()
    sweep.exit_code = None
    argv, sys.argv, out, code = sys.argv, ["runner", *args], io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out):
            cli.main()
    except SystemExit as e:
        code = e.code or 0
    finally:
        sys.argv = argv
    return code, out.getvalue()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Two real GAN runs (seeds 0 and 1) in sweep/0 and sweep/1."""
    root = tmp_path_factory.mktemp("faults")
    code, out = runner_here("-m", *TINY, "seed=0,1", f"hydra.sweep.dir={root}/sweep")
    assert code == 0, out
    return root / "sweep"


def report(*args: str) -> tuple[int, str]:
    """`runner-report ARGS` through the console script's function, in this process."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    return code, out.getvalue()


def unreadable_rows(index: Path) -> dict[str, str]:
    """{run folder name: why} of the report's table of folders that could not be read."""
    text = index.read_text()
    if "Run folders that could not be read" not in text:
        return {}
    table = text[text.index("Run folders that could not be read"):].split("</table>")[0]
    rows = [row.split("</td><td") for row in table.split("<tr><td")[1:]]
    return {Path(html.unescape(r[0].lstrip(">").split("<")[0])).name: html.unescape(r[1].split(">", 1)[1].split("</td>")[0])
            for r in rows}


def _edit_summary(job: Path, **changes) -> None:
    s = json.loads((job / "summary.json").read_text())
    (job / "summary.json").write_text(json.dumps({**s, **changes}))


def _edit_conv(job: Path, **changes) -> None:
    s = json.loads((job / "summary.json").read_text())
    _edit_summary(job, convergence={**s["convergence"], **changes})


def _prepend_line(job: Path, line: str) -> None:
    (job / "metrics.jsonl").write_text(line + "\n" + (job / "metrics.jsonl").read_text())


def _link_out(job: Path, name: str) -> None:
    outside = job.parent.parent / f"outside_{job.name}"
    shutil.copy(job / name, outside)  # a valid file, outside: still not read
    (job / name).unlink()
    (job / name).symlink_to(outside)


def _hydra_dir_out(job: Path) -> None:
    outside = job.parent.parent / f"outside_{job.name}"
    shutil.move(job / ".hydra", outside)
    (job / ".hydra").symlink_to(outside, target_is_directory=True)


def _fifo(job: Path) -> None:
    (job / "summary.json").unlink()
    os.mkfifo(job / "summary.json")


def _sparse(job: Path, name: str, size: int) -> None:
    with open(job / name, "ab") as f:
        f.truncate(size)  # a sparse file: huge to stat, nothing on the disk


def _python_tag(job: Path) -> None:
    marker = job.parent.parent / f"ran_{job.name}"
    (job / ".hydra" / "config.yaml").write_text(f"seed: 1\nx: !!python/object/apply:os.system ['touch {marker}']\n")


LAUGHS = "a: &a [x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 8)}]\n" for i in range(8))

# name: (inject the fault into a copy of a good run, what the report must say about it)
FAULTS = {
    "metrics_bad_line": (lambda j: _prepend_line(j, "garbage"), "metrics.jsonl line 1: not a JSON record"),
    "metrics_list_line": (lambda j: _prepend_line(j, "[1, 2]"), "metrics.jsonl line 1 holds a list, not a record"),
    "metrics_string_metric": (lambda j: _prepend_line(j, '{"step": 1, "gan/loss_g": "low"}'),
                              "metrics.jsonl line 1: 'gan/loss_g' is a string ('low'), not a number"),
    "metrics_dict_metric": (lambda j: _prepend_line(j, '{"step": 1, "gan/loss_g": {"a": 1}}'),
                            "'gan/loss_g' is an object, not a number"),
    "metrics_no_step": (lambda j: _prepend_line(j, '{"gan/loss_g": 1.0}'), "line 1: step is null, not a number"),
    "metrics_bad_nonfinite": (lambda j: _prepend_line(j, '{"step": 1, "gan/loss_g": null, "nonfinite": {"gan/loss_g": "big"}}'),
                              "metrics.jsonl line 1: \"nonfinite\" names 'gan/loss_g'"),
    "metrics_not_utf8": (lambda j: (j / "metrics.jsonl").write_bytes(b"\xff\xfe garbage\n"), "metrics.jsonl is not UTF-8"),
    "metrics_huge": (lambda j: _sparse(j, "metrics.jsonl", 5 << 30), "metrics.jsonl is 5.0 GiB, more than the 4.0 GiB"),
    "summary_empty": (lambda j: (j / "summary.json").write_text(""), "summary.json is empty"),
    "summary_not_json": (lambda j: (j / "summary.json").write_text("{not json"), "summary.json: not JSON"),
    "summary_list": (lambda j: (j / "summary.json").write_text("[1, 2]"), "summary.json: holds a list, not an object"),
    "summary_string": (lambda j: (j / "summary.json").write_text('"done"'), "summary.json: holds a string ('done')"),
    "summary_no_status": (lambda j: (j / "summary.json").write_text("{}"), "summary.json: has no status"),
    "summary_status_object": (lambda j: _edit_summary(j, status={"a": 1}), "status is an object, not one of completed"),
    "summary_final_string": (lambda j: _edit_summary(j, final={"gan/dist_to_eq": "big"}),
                             "summary.json: final['gan/dist_to_eq'] is a string ('big'), not a number or null"),
    "summary_final_list": (lambda j: _edit_summary(j, final=[1]), "summary.json: final is a list, not an object"),
    "summary_steps_string": (lambda j: _edit_summary(j, steps="many"), "steps is a string ('many'), not a whole number"),
    "summary_wall_string": (lambda j: _edit_summary(j, wall_time_s="long"), "wall_time_s is a string ('long')"),
    "summary_conv_string": (lambda j: _edit_summary(j, convergence="x"), "convergence is a string ('x'), not an object"),
    "summary_rate_string": (lambda j: _edit_conv(j, **{"conv/rate": "fast"}), "convergence['conv/rate'] is a string"),
    "summary_window_number": (lambda j: _edit_conv(j, **{"conv/window": 3}), "convergence['conv/window'] is a number"),
    "summary_points_fraction": (lambda j: _edit_conv(j, **{"conv/points": 2.5}), "'conv/points'] is a number, not a whole"),
    "summary_provenance_list": (lambda j: _edit_summary(j, provenance=[1]), "provenance is a list, not an object"),
    "summary_nested_deep": (lambda j: (j / "summary.json").write_text("[" * 100_000 + "]" * 100_000), "nested too deeply"),
    "summary_huge": (lambda j: _sparse(j, "summary.json", 65 << 20), "summary.json is 65.0 MiB, more than the 64.0 MiB"),
    "summary_is_a_folder": (lambda j: ((j / "summary.json").unlink(), (j / "summary.json").mkdir()),
                            "summary.json is not a regular file"),
    "summary_is_a_fifo": (_fifo, "summary.json is not a regular file"),
    "summary_links_outside": (lambda j: _link_out(j, "summary.json"), "summary.json is a link to"),
    "metrics_links_outside": (lambda j: _link_out(j, "metrics.jsonl"), "metrics.jsonl is a link to"),
    "hydra_folder_links_outside": (_hydra_dir_out, ".hydra/config.yaml is a link to"),
    "config_invalid_yaml": (lambda j: (j / ".hydra" / "config.yaml").write_text("a: [unclosed\n  b: :"),
                            ".hydra/config.yaml: not valid YAML (did not find expected ',' or ']' at line 2"),
    "config_python_tag": (_python_tag, "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object"),
    "config_aliases": (lambda j: (j / ".hydra" / "config.yaml").write_text(LAUGHS), "uses YAML aliases"),
    "config_a_list": (lambda j: (j / ".hydra" / "config.yaml").write_text("- 1\n- 2\n"),
                      ".hydra/config.yaml holds a list, not a mapping"),
    "overrides_invalid_yaml": (lambda j: (j / ".hydra" / "overrides.yaml").write_text("- [unclosed"),
                               ".hydra/overrides.yaml: not valid YAML"),
    "overrides_an_object": (lambda j: (j / ".hydra" / "overrides.yaml").write_text("a: 1\n"),
                            ".hydra/overrides.yaml holds an object, not a list of overrides"),
}


MATH = r"+tag=$\frac{a$[/]"  # unparsable as matplotlib's math text, and as rich markup


@pytest.fixture(scope="module")
def faulty(runs, tmp_path_factory) -> tuple[Path, int, str]:
    """The two good runs, one copy of run 1 per fault, each with that one bad file, a bad claim.json,
    a run whose override is MATH (readable: a group of its own), and a link planted in the report
    folder; the report's exit code and terminal output (one report: figures take seconds each)."""
    root = tmp_path_factory.mktemp("faulty") / "runs"
    shutil.copytree(runs, root / "good")
    for name, (inject, _) in FAULTS.items():
        shutil.copytree(runs / "1", root / name)
        inject(root / name)
    (root / "claim.json").write_text(json.dumps({"name": "c", "measure": "conv/rate", "rows": [{"ci": "wide"}]}))
    hydra = shutil.copytree(runs / "1", root / "math") / ".hydra"
    (hydra / "overrides.yaml").write_text((hydra / "overrides.yaml").read_text() + f"- '{MATH}'\n")
    (hydra / "config.yaml").write_text((hydra / "config.yaml").read_text() + f"tag: '{MATH[5:]}'\n")
    (root / "report").mkdir()
    (root / "report" / "index.html").symlink_to(root.parent / "victim.txt")
    (root.parent / "victim.txt").write_text("keep me")
    code, out = report(str(root))
    return root, code, out


def test_each_bad_file_leaves_out_its_run_alone_and_says_why(faulty):
    root, code, out = faulty
    assert code == 0, out
    assert "Traceback" not in out
    index = (root / "report" / "index.html").read_text()
    assert "3 runs in 2 groups" in index and f"{len(FAULTS) + 1} could not be read" in index  # the good runs are reported
    assert "2 completed" in out and "1 completed" in out  # ... in the terminal too
    listed = unreadable_rows(root / "report" / "index.html")
    for name, (_, why) in FAULTS.items():
        assert name in listed, (name, listed)
        assert why in listed[name], (name, listed[name])
    assert listed["claim.json"] == "claim.json: rows[0].ci is a string ('wide'), not null or a list of two numbers"
    flat = " ".join(out.split())
    assert "Run folders that could not be read" in flat and f"{len(FAULTS) + 1} run folder(s) or claim files" in flat
    assert all(name in out for name in FAULTS)


def test_nothing_read_runs_code_or_is_read_through_a_link_out(faulty):
    root, _, out = faulty
    assert not list(root.parent.glob("ran_*")) and not list(root.glob("ran_*"))  # the !!python tag ran nothing
    listed = unreadable_rows(root / "report" / "index.html")
    assert str(root.parent / "outside_summary_links_outside") in listed["summary_links_outside"]


def test_math_text_and_markup_in_an_override_are_shown_as_text(faulty):
    root, _, out = faulty
    index = (root / "report" / "index.html").read_text()
    assert "math" not in unreadable_rows(root / "report" / "index.html")
    assert f"<td>{html.escape(MATH.lstrip('+'))}</td>" in index  # the group's label, as it is
    assert len(list((root / "report").glob("fig_*.png"))) > 3 and MATH.lstrip("+") in "".join(out.split())


def test_a_summary_lacking_keys_still_reads_and_shows_what_it_has(runs, tmp_path):
    shutil.copytree(runs, tmp_path / "runs")
    (tmp_path / "runs" / "1" / "summary.json").write_text('{"status": "completed"}')
    code, out = report(str(tmp_path / "runs"))
    assert code == 0, out
    assert not unreadable_rows(tmp_path / "runs" / "report" / "index.html")
    assert "2 completed" in out


def test_nonfinite_values_read_back_in_the_new_and_the_old_form(tmp_path):
    new, old = tmp_path / "new", tmp_path / "old"
    for folder in (new, old):
        folder.mkdir()
    (new / "metrics.jsonl").write_text('{"step": 1, "a": 1.0}\n{"step": 2, "a": null, "b": null, "c": null, '
                                       '"nonfinite": {"a": "inf", "b": "-inf", "c": "nan"}}\n')
    (old / "metrics.jsonl").write_text('{"step": 1, "a": 1.0}\n{"step": 2, "a": Infinity, "b": -Infinity, "c": NaN}\n')
    (new / "summary.json").write_text('{"status": "diverged", "final": {"a": null, "nonfinite": {"a": "inf"}}, '
                                      '"convergence": {"conv/rate": null, "nonfinite": {"conv/rate": "nan"}}}')
    (old / "summary.json").write_text('{"status": "diverged", "final": {"a": Infinity}, "convergence": {"conv/rate": NaN}}')
    a, b = read_run(new), read_run(old)
    for run in (a, b):
        assert run.columns["a"].tolist() == [1.0, float("inf")] and run.columns["b"][1] == -float("inf")
        assert math.isnan(run.columns["c"][1]) and "nonfinite" not in run.columns
        assert run.summary["final"] == {"a": float("inf")} and math.isnan(run.summary["convergence"]["conv/rate"])
    code, out = report(str(tmp_path))
    assert code == 0 and out.count("1 diverged") == 2, out


def test_a_bad_out_is_one_clear_line_not_a_traceback(runs, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    proc = subprocess.run([sys.executable, "-m", "runner.report", str(runs), "--out", str(afile)], cwd=ROOT, env=ENV,
                          text=True, capture_output=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert f"cannot write the report in {afile}: it is a file, not a folder" in " ".join(proc.stdout.split())
    assert afile.read_text() == "keep me"
    code, out = report(str(runs), "--out", str(afile / "report"))
    assert code == 1 and "cannot write the report in" in out and "Not a directory" in out, out


def test_a_read_only_out_is_one_clear_line(runs, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    prefix = []
    if os.geteuid() == 0:  # root writes anywhere: the report's process runs without that capability
        if not shutil.which("setpriv"):
            pytest.skip("root, and no setpriv to drop CAP_DAC_OVERRIDE")
        prefix = ["setpriv", "--bounding-set=-dac_override", "--"]
    try:
        proc = subprocess.run([*prefix, sys.executable, "-m", "runner.report", str(runs), "--out", str(locked)],
                              cwd=ROOT, env=ENV, text=True, capture_output=True, timeout=120)
    finally:
        locked.chmod(0o755)
    if proc.stderr.startswith("setpriv:"):
        pytest.skip(proc.stderr)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    assert f"cannot write the report in {locked}: Permission denied" in " ".join(proc.stdout.split()), proc.stdout


def test_links_planted_in_the_report_folder_are_not_written_through(faulty, runs, tmp_path):
    root, _, _ = faulty
    assert (root.parent / "victim.txt").read_text() == "keep me" and not (root / "report" / "index.html").is_symlink()
    shutil.copytree(runs, tmp_path / "runs")
    (tmp_path / "runs" / "report").symlink_to(tmp_path, target_is_directory=True)  # the report folder itself
    code, out = report(str(tmp_path / "runs"))
    assert code == 1 and "is a link" in out and not (tmp_path / "index.html").exists(), out


def test_only_unreadable_runs_is_an_error_that_lists_them(runs, tmp_path):
    shutil.copytree(runs / "1", tmp_path / "runs" / "1")
    (tmp_path / "runs" / "1" / "summary.json").write_text("[]")
    code, out = report(str(tmp_path / "runs"))
    assert code == 1 and "none of the 1 run folders" in out and "holds a list" in out, out


def test_the_closing_line_counts_records_past_a_bad_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\ngarbage\n[3]\n{"step": "x"}\n{"step": 5}\n{"step": 6, "a"')
    assert records_after(tmp_path / "metrics.jsonl", 2) == 1
    os.mkfifo(tmp_path / "fifo")
    assert records_after(tmp_path / "fifo", 0) == 0


def test_a_sweeper_objective_from_an_unreadable_summary_is_the_worst_value(tmp_path):
    for text in ("{not json", "[1]", '{"status": "completed", "final": {"x": "1.0"}}'):
        (tmp_path / "summary.json").write_text(text)
        assert sweep.objective(tmp_path, "x", "final", minimize=True) == float("inf")
    (tmp_path / "summary.json").write_text('{"status": "completed", "final": {"x": 0.5}}')
    assert sweep.objective(tmp_path, "x", "final", minimize=True) == 0.5


def _corrupt(job: int, text: str) -> list[str]:
    return [f"+hydra.callbacks.corrupt._target_={__name__}.CorruptSummary", f"+hydra.callbacks.corrupt.job={job}",
            f"+hydra.callbacks.corrupt.text='{text}'"]


@pytest.mark.parametrize("text, why", [("{not json", "unreadable: summary.json: not JSON"),
                                       ('{\"status\": \"completed\", \"final\": []}', "unreadable: summary.json: final is a list")])
def test_a_corrupted_summary_is_listed_unreadable_in_the_sweep_table_and_the_sweep_exits_1(tmp_path, text, why):
    code, out = runner_here("-m", *TINY, "seed=0,1", f"hydra.sweep.dir={tmp_path}", *_corrupt(1, text))
    assert code == 1, out
    table = " ".join(out[out.index("sweep: 2 jobs"):].split())
    assert why in table.replace("│ ", "").replace(" │", "")
    assert "1 of 2 jobs did not finish: 1 (unreadable: summary.json" in table
    assert sweep.exit_code == 1


@pytest.mark.slow  # ~25 s: joblib's workers start and import torch
def test_with_joblib_a_corrupted_summary_is_listed_and_the_sweep_exits_1(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    proc = subprocess.run([sys.executable, "-m", "runner", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                           *TINY, "seed=0,1", f"hydra.sweep.dir={tmp_path}", *_corrupt(0, "[1, 2]")],
                          cwd=ROOT, env=ENV, text=True, capture_output=True, timeout=300)
    out = " ".join(proc.stdout.split())
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 of 2 jobs did not finish: 0 (unreadable: summary.json: holds a list, not an object)" in out, out
    assert "raised" not in proc.stderr  # no error in the sweep's callback, turned into a warning by Hydra
