"""`runner-report PATH...`: an HTML report with figures, and a table in the terminal, from run
and sweep folders, offline.

    runner-report outputs/multirun/2026-11-23/12-00-00            # one sweep
    runner-report outputs/multirun/2026-11-23 outputs/2026-11-23  # every run below these folders
    runner-report SWEEP --out reports/sgd_vs_adam                 # report folder of your choice
    runner-report SWEEP --label 'optim.lr=0.1:GD 1/L'             # a group named as you choose

Writes <out>/index.html (one file that works offline: interactive figures, plotly.js inlined),
<out>/static.html (the same page with PNG figures, no script) and each figure as PNG, SVG and PDF
beside them; <out> is <first PATH>/report unless --out says otherwise. A folder holding claim.json (a claim's
sweep) adds the claim's rows and its predicted law beside the measured curves. Every file read is
untrusted input: a run folder with a file that cannot be used is left out and listed with why.
Exit status 1 when no readable run was found or the report cannot be written there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from runner.report import html as H
from runner.report import interactive as I
from runner.report.aggregate import curve_metrics, y_scale
from runner.report.claims import claim_figure, claim_table, read_claims
from runner.report.conv import local_figure, order_figure
from runner.report.figures import VECTOR, image, metric_figure
from runner.report.files import safe_name, writable, write
from runner.report.names import BadLabel, label_arg, name_groups
from runner.report.results import Group, find_runs, group_runs, primary_metric, read_runs, swept_lr_keys
from runner.report.stability import lr_figure
from runner.report.verdicts import fit_table, repeats_table, runs_fit_table

AGGREGATION = ("Curves: each group's runs are aligned on their logged steps (interpolated linearly inside each "
               "run's own range) and averaged; a run that stopped early leaves the mean where it stopped. Against "
               "time and gradient evaluations, the mean at a step sits at the runs' mean time (evaluations) there. "
               "Log axes average log10 values (geometric mean), zeros drawn at the smallest positive value. "
               "Bands: the 95% t-interval of the mean where 3 or more seeds; 1 or 2 seeds: no band, 2 drawn as thin lines.")


@dataclass
class Report:
    groups: list[Group]
    primary: str | None
    tables: list[H.Table]  # for the terminal: overview, problem runs, provenance differences, verdicts, claims
    html: Path
    figures: list[Path]
    unreadable: list[tuple[Path, str]]  # run folders and claim files left out, with why


class NoRuns(Exception):
    """Nothing to report: no run folder, or none that could be read (`unreadable` says why)."""

    def __init__(self, message: str, unreadable: H.Table | None = None):
        super().__init__(message)
        self.unreadable = unreadable


def build(paths: Sequence[Path], out: Path, labels: Sequence[tuple[dict[str, str], str]] = ()) -> Report:
    """Read every run below `paths`, write `out`/index.html and the figures; `labels` are the
    user's group names ((selector, name), names.label_arg), a BadLabel before anything is written."""
    # Text from run folders never goes to LaTeX; PDFs embed TrueType fonts (journals refuse Type 3)
    with matplotlib.rc_context({"text.usetex": False, "pdf.fonttype": 42, "svg.hashsalt": "runner-report"}):
        return _build(paths, out, labels)


def _build(paths: Sequence[Path], out: Path, labels: Sequence[tuple[dict[str, str], str]]) -> Report:
    folders = find_runs(paths)
    runs, unreadable = read_runs(folders)
    claims = read_claims(paths, unreadable)
    if not runs:
        where = ", ".join(map(str, paths))
        raise NoRuns(f"none of the {len(folders)} run folders in {where} could be read" if folders else
                     f"no run folders (with summary.json or metrics.jsonl) in {where}", H.unreadable_table(unreadable))
    groups, common = group_runs(runs)
    name_groups(groups, labels)
    writable(out)
    primary = primary_metric(runs)
    metrics = curve_metrics(runs, primary)
    scales = {m: y_scale(runs, m) for m in metrics}
    log = {m for m, (kind, _) in scales.items() if kind == "log"}  # geometric means for these
    for old in [p for kind in ("png", *VECTOR) for p in out.glob(f"fig_*.{kind}")]:
        old.unlink()
    figures, curves, lr_parts, conv_parts, claim_parts = [], [], [], [], []
    plots: dict[str, str] = {}  # each figure's static part -> its interactive part
    for i, metric in enumerate(metrics):
        curves.append(_save(metric_figure(groups, metric, scales[metric]), out / f"fig_{i:02d}_{safe_name(metric)}.png", figures, plots))
    finals = [m for m in dict.fromkeys([primary, "eval/acc", "train/loss", "rl/return"]) if m and m in scales]
    for key in swept_lr_keys(groups):
        fig = lr_figure(groups, key, finals, log)
        if fig is not None:
            lr_parts.append(_save(fig, out / f"fig_lr_{safe_name(key)}.png", figures, plots))
    counted = [r for g in groups for r in g.runs]  # repeats of a seed left out
    fits, repeats = fit_table(groups), repeats_table(groups)
    verdicts = [t for t in (fits, runs_fit_table(groups), repeats) if t]
    for name, fig in (("fig_order.png", order_figure(groups)), ("fig_local_rate.png", local_figure(groups))):
        if fig is not None:
            conv_parts.append(_save(fig, out / name, figures, plots))
    for i, claim in enumerate(claims):
        claim_parts.append(H.table_html(claim_table(claim)))
        fig = claim_figure(claim, counted)
        if fig is not None:
            claim_parts.append(_save(fig, out / f"fig_claim_{i:02d}_{safe_name(claim.name)}.png", figures, plots))
    overview, problems, provenance = H.overview(groups, log), H.problems_table(groups), H.provenance_table(groups)
    bad = H.unreadable_table(unreadable)
    tables = [t for t in (H.values_table(groups, "final", log), H.values_table(groups, "best", log),
                          H.thresholds_table(groups)) if t]
    meta = [f"{len(counted)} runs in {len(groups)} groups from {', '.join(map(str, paths))}; "
            f"made {time.strftime('%Y-%m-%d %H:%M')} from local files"
            + (f"; {len(unreadable)} could not be read (listed below)" if unreadable else ""),
            f"common to all runs: {' '.join(common) or '-'}", AGGREGATION]
    sections = [
        ("Overview", [H.table_html(t) for t in (overview, bad, problems, provenance) if t]),
        ("Claims: predicted and measured", claim_parts),
        ("Convergence verdicts", [H.table_html(t) for t in verdicts] + conv_parts), ("Curves", curves),
        ("Stability: final metrics against the learning rate", lr_parts),
        ("Final and best values, thresholds", [H.table_html(t) for t in tables])]
    write(out / "static.html", H.page("runner-report", meta, sections).encode())
    write(out / "index.html", I.page("runner-report", meta, sections, plots).encode())
    terminal = [t for t in (overview, bad, problems, provenance, fits, repeats) if t]
    return Report(groups, primary, terminal + [claim_table(c) for c in claims], out / "index.html", figures, unreadable)


def _save(fig: Figure, path: Path, saved: list[Path], plots: dict[str, str]) -> str:
    """`fig` as PNG (`path`), SVG and PDF; returns its part of the static page and keeps its
    interactive part in `plots` under it."""
    data = image(fig, "png")
    write(path, data)
    fig.set_layout_engine("none")  # keeps the PNG's layout: the vector files do not lay it out again (a third of their time)
    files = [path.name]
    for kind in VECTOR:
        write(path.with_suffix(f".{kind}"), image(fig, kind))
        files.append(path.with_suffix(f".{kind}").name)
    saved.append(path)
    part = H.figure_html(data, path.name)
    plots[part] = I.figure_html(fig, path.stem, files)
    return part


def rich_table(table: H.Table) -> RichTable:
    t = RichTable(title=escape(table.title), caption=escape(table.note), header_style="bold")
    for h in table.header:
        t.add_column(escape(h), justify="left" if h in ("runs", "status", "kind (seeds)", *H.WRAPPED) else "right")
    for row in table.rows:
        t.add_row(*map(escape, row))  # cells hold [lo, hi]: text, not rich markup
    return t


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runner-report", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("paths", nargs="+", type=Path, help="run folders, sweep folders, or folders above them")
    parser.add_argument("--out", type=Path, help="report folder (default: <first PATH>/report)")
    parser.add_argument("--label", type=label_arg, action="append", default=[], metavar="'SELECTOR:NAME'",
                        help="name the group whose values match every key=value of SELECTOR, e.g. "
                             "'optim.lr=0.1:GD 1/L' (repeatable; a key may be its last part, lr for optim.lr)")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        console.print(f"[red]no such folder:[/] {escape(', '.join(map(str, missing)))}", highlight=False)
        return 1
    out = args.out or args.paths[0] / "report"
    if args.out is None and out.is_symlink():  # a run folder from elsewhere may hold one: not followed
        console.print(f"[red]{escape(str(out))} is a link (to {escape(os.readlink(out))}): the report is not "
                      "written through it; choose a folder with --out[/]", highlight=False)
        return 1
    t0 = time.perf_counter()
    try:
        report = build(args.paths, out, args.label)
    except (NoRuns, BadLabel) as e:
        if getattr(e, "unreadable", None):
            console.print(rich_table(e.unreadable))
        console.print(f"[red]{escape(str(e))}[/]", highlight=False)
        return 1
    except OSError as e:  # --out on a file, a read-only folder, a full disk
        console.print(f"[red]cannot write the report in {escape(str(out))}: {escape(e.strerror or str(e))}"
                      f"{escape(f' ({e.filename})') if e.filename and str(e.filename) != str(out) else ''}; "
                      "choose another folder with --out[/]", highlight=False)
        return 1
    for table in report.tables:
        console.print(rich_table(table))
    if report.unreadable:
        console.print(f"[yellow]{len(report.unreadable)} run folder(s) or claim files could not be read and are "
                      "left out: listed above and in the report[/]", highlight=False)
    console.print(f"report: {escape(str(report.html))} ({len(report.figures)} figures, {time.perf_counter() - t0:.1f} s)",
                  highlight=False, soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
