"""`runner-report` on a real sweep made by the runner in a temporary folder: GAN extragradient at
three learning rates (the largest diverges) x two seeds, a failing classifier run and a run that
was killed before writing its summary. Plus the statistics on hand-checkable numbers."""

from __future__ import annotations

import contextlib
import io
import json
import math
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from runner.report.__main__ import build, main
from runner.report.aggregate import curve, t_interval
from runner.report.fit import measure_of
from runner.report.results import Run
from runner.report.text import number
from tests.helpers import ROOT

ENV_ARGS = ("logger=none",)
T_975 = {1: 12.706204736174698, 2: 4.302652729749464}  # Student t 0.975 quantiles, from tables


def runner(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runner", *args, *ENV_ARGS], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A folder holding the sweep (sweep/0..5), a failed run and a killed one beside it."""
    root = tmp_path_factory.mktemp("runs")
    jobs = [runner("-m", "task=gan", "task.scheme=extragradient", "optim.lr=0.05,0.2,2", "seed=0,1", "task.steps=200",
                   "log_every=5", "task.path_every=0", f"hydra.sweep.dir={root}/sweep"),
            runner("task._target_=tests.faulty.FailingClassifier", "+task.fail_at=15", "task.epochs=1", "log_every=5",
                   f"hydra.run.dir={root}/failing")]
    outs = [job.communicate(timeout=300)[0] for job in jobs]
    assert jobs[0].returncode == 0, outs[0]
    assert jobs[1].returncode == 1, outs[1]
    killed = root / "killed"  # seed 7 of the first config, killed mid-run: no summary, last line cut short
    shutil.copytree(root / "sweep" / "0", killed)
    (killed / "summary.json").unlink()
    lines = (killed / "metrics.jsonl").read_text().splitlines()[:10]
    (killed / "metrics.jsonl").write_text("\n".join(lines) + "\n" + lines[10 - 1][:25])
    hydra_cfg = killed / ".hydra" / "config.yaml"
    hydra_cfg.write_text(hydra_cfg.read_text().replace("seed: 0", "seed: 7"))
    return root


def report_cli(*args: str) -> subprocess.CompletedProcess:
    """`runner-report ARGS` in this process (the console script calls the same main)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    return subprocess.CompletedProcess(["runner-report", *args], code, out.getvalue(), "")


@pytest.fixture(scope="module")
def cli(sweep) -> subprocess.CompletedProcess:
    return report_cli(str(sweep))


@pytest.fixture(scope="module")
def report(sweep):
    return build([sweep], sweep / "report_api")


def group(report, overrides: str):
    """The group whose label holds these overrides (labels list what sets a group apart)."""
    return next(g for g in report.groups if f" {overrides} " in f" {g.label} ")


def summaries(folder: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in folder.glob("sweep/*/summary.json")}


def test_report_writes_html_and_nonblank_figures(sweep, cli):
    """static.html embeds each PNG; index.html draws each as a plot and links its three files,
    and the SVG and PDF beside the PNG are whole files of their kind (the browser test, in
    test_interactive.py, checks that the plots draw)."""
    assert cli.returncode == 0, cli.stdout + cli.stderr
    html = (sweep / "report" / "static.html").read_text()
    live = (sweep / "report" / "index.html").read_text()
    figures = sorted((sweep / "report").glob("fig_*.png"))
    names = [f.name for f in figures]
    assert names[0] == "fig_00_gan_dist_to_eq.png"  # the primary metric first
    assert "fig_lr_optim.lr.png" in names and any("train_loss" in n for n in names)
    for fig in figures:
        pixels = imread(fig)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 400, fig
        assert pixels[..., :3].std() > 0.05, f"{fig} is blank"
        assert f'alt="{fig.name}"' in html  # embedded in the page too
    assert html.count("data:image/png;base64,") == len(figures) and "<script" not in html
    assert live.count("<figure class=plotly>") == len(figures) and "<img" not in live
    for fig in figures:
        svg, pdf = fig.with_suffix(".svg"), fig.with_suffix(".pdf")
        assert ET.parse(svg).getroot().tag.endswith("svg") and b"<path" in svg.read_bytes(), svg
        assert pdf.read_bytes().startswith(b"%PDF-") and pdf.read_bytes().rstrip().endswith(b"%%EOF"), pdf
        assert b"/FontFile2" in pdf.read_bytes() and b"/Type3" not in pdf.read_bytes(), f"{pdf}: fonts not TrueType"
        assert all(f'href="{f.name}"' in live for f in (fig, svg, pdf))
    assert "95% t-interval" in html and "95% t-interval" in live and "R²" not in html


def test_groups_seeds_and_statuses(report):
    assert len(report.groups) == 4
    # named by what sets them apart, each key by its shortest unambiguous last part
    assert group(report, "lr=0.2").label == "task=gan scheme=extragradient lr=0.2 steps=200 path_every=0"
    assert group(report, "fail_at=15").label == "_target_=tests.faulty.FailingClassifier fail_at=15 epochs=1"
    killed_group = group(report, "lr=0.05")
    assert sorted(r.seed for r in killed_group.runs) == [0, 1, 7]
    assert sorted(r.status for r in killed_group.runs) == ["completed", "completed", "unfinished"]
    assert len(next(r for r in killed_group.runs if r.status == "unfinished").columns["step"]) == 10  # cut line dropped
    assert [r.status for r in group(report, "lr=2").runs] == ["diverged", "diverged"]
    assert [r.status for r in group(report, "fail_at=15").runs] == ["failed"]
    assert report.primary == "gan/dist_to_eq"


def test_terminal_table_and_failed_runs_listed_with_why(sweep, cli):
    out = cli.stdout
    assert "Groups" in out and " lr=0.2 " in out and "2 completed" in out
    assert "1 failed" in out and "2 diverged" in out and "1 unfinished" in out
    assert "Runs that did not complete" in out
    assert "RuntimeError: boom at step 15" in out.replace("\n", " ") or "boom at step 15" in out
    html = (sweep / "report" / "index.html").read_text()
    assert "RuntimeError: boom at step 15" in html and "diverged at step" in html
    assert "no summary.json: still running, or killed" in html
    assert f"report: {sweep / 'report' / 'index.html'}" in out.replace("\n", "")


def test_two_seeds_are_reported_as_their_two_values(sweep, cli):
    """Two seeds give their two values, not a t-interval on one degree of freedom (12.7 times their
    half-difference: wider than the data, and negative for a positive quantity)."""
    s = summaries(sweep)
    finals = sorted(s[j]["final"]["gan/dist_to_eq"] for j in ("2", "3"))  # lr 0.2, seeds 0 and 1
    html = (sweep / "report" / "index.html").read_text()
    row = html[html.index("<td>task=gan scheme=extragradient lr=0.2 "):].split("</tr>")[0]
    assert f"{number(finals[0], finals[1] - finals[0])} to {number(finals[1], finals[1] - finals[0])}" in row
    assert "±" not in row
    convs = [s[j]["convergence"] for j in ("2", "3")]
    key = measure_of(convs[0])
    if key and all(measure_of(c) == key and c["conv/kind"] == convs[0]["conv/kind"] for c in convs):
        lo, hi = sorted(c[key] for c in convs)
        verdicts = html[html.index("Convergence verdict of"):]
        a, b = number(lo, hi - lo), number(hi, hi - lo)
        assert (f"{a} to {b}" if a != b else f"{a} (both seeds)") in verdicts  # seeds that agree to 7 digits: one value


def test_curve_at_a_logged_step_is_the_mean_over_seeds(sweep, report):
    c = curve(group(report, "lr=0.2").runs, "gan/loss_g", "step", None)
    records = [[json.loads(line) for line in (sweep / "sweep" / j / "metrics.jsonl").read_text().splitlines()] for j in "23"]
    at_50 = [next(r["gan/loss_g"] for r in rec if r["step"] == 50) for rec in records]
    i = int(np.flatnonzero(c.x == 50)[0])
    assert c.n[i] == 2
    assert c.mean[i] == pytest.approx(np.mean(at_50))
    assert np.isnan(c.lo[i]) and np.isnan(c.hi[i])  # two seeds: no band (t = 12.7); the figure draws the runs


def test_t_interval_on_known_numbers():
    mean, half, n = t_interval(np.array([[1.0, 1.0, 5.0], [2.0, np.nan, 5.0], [3.0, np.nan, 5.0]]))
    assert mean.tolist() == [2.0, 1.0, 5.0] and n.tolist() == [3, 1, 3]
    assert half[0] == pytest.approx(T_975[2] * 1.0 / math.sqrt(3))  # s = 1
    assert math.isnan(half[1]) and half[2] == 0.0


def _run(steps: list[int], values: list[float], status: str = "completed") -> Run:
    cols = {"step": np.array(steps, float), "time_s": np.array(steps, float) / 10, "train/loss": np.array(values)}
    return Run(Path("x"), 0, {}, [], {"status": status}, cols)


def test_runs_of_different_lengths_and_step_grids_align_on_logged_steps():
    short, long = _run([10, 20, 30], [1.0, 2.0, 3.0]), _run([10, 20, 40, 60], [3.0, 4.0, 6.0, 8.0])
    c = curve([short, long], "train/loss", "step", None)
    assert c.x.tolist() == [10, 20, 30, 40, 60]
    assert c.n.tolist() == [2, 2, 2, 1, 1]  # the short run leaves the mean where it stopped
    assert c.mean.tolist() == pytest.approx([2.0, 3.0, 4.0, 6.0, 8.0])  # long run at 30: halfway 4 -> 6 = 5
    assert math.isnan(c.hi[-1])
    slow = _run([10, 20, 30], [1.0, 2.0, 3.0])
    slow.columns["time_s"] = np.array([3.0, 4.0, 5.0])  # a slow start: 3 s before its first record
    timed = curve([slow, long], "train/loss", "time", None)  # long: time = step / 10
    assert timed.x.tolist() == pytest.approx([2.0, 3.0, 4.0, 4.0, 6.0])  # mean time to reach each step
    assert timed.mean.tolist() == pytest.approx(c.mean.tolist())  # the same means, steps never mixed
    logged = curve([_run([1, 2], [1e-2, 1e-4]), _run([1, 2], [1e-4, 0.0])], "train/loss", "step", floor=1e-6)
    assert logged.mean.tolist() == pytest.approx([1e-3, 1e-5])  # geometric mean, the zero lifted to the floor


def test_no_runs_is_a_clear_error(tmp_path):
    proc = report_cli(str(tmp_path))
    assert proc.returncode == 1 and "no run folders" in proc.stdout


def test_labels_name_groups_everywhere_and_a_bad_one_stops_before_any_work(sweep, tmp_path):
    """`runner-report --label 'SELECTOR:NAME'`: the group is NAME in the terminal, the tables and the
    legends; a selector matching no group or several is one line naming it and the groups, with
    nothing written; a label without `:NAME` is argparse's usage error."""
    out = tmp_path / "named"
    proc = report_cli(str(sweep), "--out", str(out), "--label", "lr=0.2:EG, mid step",
                      "--label", "optim.lr=2 scheme=extragradient:EG too big")
    assert proc.returncode == 0, proc.stdout
    live, flat = (out / "index.html").read_text(), " ".join(proc.stdout.split())
    assert "<td>EG, mid step</td>" in live and "<td>EG too big</td>" in live and "EG, mid step" in flat
    assert '"legendgroup":"EG, mid step (n=2, no band)"' in live and "<td>task=gan scheme=extragradient lr=0.05" in live
    for label, said in (("lr=0.3:x", "matches no group"), ("scheme=extragradient:x", "matches 3 groups")):
        bad = report_cli(str(sweep), "--out", str(tmp_path / "bad"), "--label", label)
        text = " ".join(bad.stdout.split())
        assert bad.returncode == 1 and f"--label '{label}' {said}" in text, text
        assert "task=gan scheme=extragradient lr=0.05 steps=200 path_every=0" in text  # the groups' automatic names
        assert not (tmp_path / "bad").exists()
    usage = subprocess.run([sys.executable, "-m", "runner.report", str(sweep), "--label", "lr=0.2"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert usage.returncode == 2 and "expected 'key=value [key=value ...]:NAME'" in usage.stderr
