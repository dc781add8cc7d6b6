"""`runner-report PATH...`: an HTML report with figures, and a table in the terminal, from run
and sweep folders, offline.

    runner-report outputs/multirun/2026-11-23/12-00-00            # one sweep
    runner-report outputs/multirun/2026-11-23 outputs/2026-11-23  # every run below these folders
    runner-report SWEEP --out reports/sgd_vs_adam                 # report folder of your choice

Writes <out>/index.html (self-contained: figures embedded) and each figure as a PNG beside it;
<out> is <first PATH>/report unless --out says otherwise. A folder holding claim.json (a claim's
sweep) adds the claim's rows and its predicted law beside the measured curves. Exit status 1 when
no run was found.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from runner import report_html as H
from runner.aggregate import curve_metrics, y_scale
from runner.report_claims import claim_figure, claim_table, read_claims
from runner.report_conv import local_figure, order_figure
from runner.report_figures import lr_figure, metric_figure, png
from runner.report_verdicts import fit_table, repeats_table, runs_fit_table
from runner.results import Group, find_runs, group_runs, primary_metric, read_run, swept_lr_keys

AGGREGATION = ("Curves: each group's runs are aligned on their logged steps (interpolated linearly inside each "
               "run's own range) and averaged; a run that stopped early leaves the mean where it stopped. Against "
               "time and gradient evaluations, the mean at a step sits at the runs' mean time (evaluations) there. "
               "Log axes average log10 values (geometric mean), zeros drawn at the smallest positive value.")


@dataclass
class Report:
    groups: list[Group]
    primary: str | None
    tables: list[H.Table]  # for the terminal: overview, problem runs, provenance differences, verdicts, claims
    html: Path
    figures: list[Path]


def build(paths: Sequence[Path], out: Path) -> Report:
    """Read every run below `paths`, write `out`/index.html and the figures."""
    runs = [read_run(p) for p in find_runs(paths)]
    if not runs:
        raise FileNotFoundError(f"no run folders (with summary.json or metrics.jsonl) in {', '.join(map(str, paths))}")
    groups, common = group_runs(runs)
    claims = read_claims(paths)
    primary = primary_metric(runs)
    metrics = curve_metrics(runs, primary)
    scales = {m: y_scale(runs, m) for m in metrics}
    log = {m for m, (kind, _) in scales.items() if kind == "log"}  # geometric means for these
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("fig_*.png"):
        old.unlink()
    figures, curves, lr_parts, conv_parts, claim_parts = [], [], [], [], []
    for i, metric in enumerate(metrics):
        curves.append(_save(png(metric_figure(groups, metric, scales[metric])), out / f"fig_{i:02d}_{_safe(metric)}.png", figures))
    finals = [m for m in dict.fromkeys([primary, "eval/acc", "train/loss", "rl/return"]) if m and m in scales]
    for key in swept_lr_keys(groups):
        fig = lr_figure(groups, key, finals, log)
        if fig is not None:
            lr_parts.append(_save(png(fig), out / f"fig_lr_{_safe(key)}.png", figures))
    counted = [r for g in groups for r in g.runs]  # repeats of a seed left out
    fits, repeats = fit_table(groups), repeats_table(groups)
    verdicts = [t for t in (fits, runs_fit_table(groups), repeats) if t]
    for name, fig in (("fig_order.png", order_figure(groups)), ("fig_local_rate.png", local_figure(groups))):
        if fig is not None:
            conv_parts.append(_save(png(fig), out / name, figures))
    for i, claim in enumerate(claims):
        claim_parts.append(H.table_html(claim_table(claim)))
        fig = claim_figure(claim, counted)
        if fig is not None:
            claim_parts.append(_save(png(fig), out / f"fig_claim_{i:02d}_{_safe(claim.name)}.png", figures))
    overview, problems, provenance = H.overview(groups, log), H.problems_table(groups), H.provenance_table(groups)
    tables = [t for t in (H.values_table(groups, "final", log), H.values_table(groups, "best", log),
                          H.thresholds_table(groups)) if t]
    meta = [f"{len(counted)} runs in {len(groups)} groups from {', '.join(map(str, paths))}; "
            f"made {time.strftime('%Y-%m-%d %H:%M')} from local files",
            f"common to all runs: {' '.join(common) or '-'}", AGGREGATION]
    text = H.page("runner-report", meta, [
        ("Overview", [H.table_html(t) for t in (overview, problems, provenance) if t]),
        ("Claims: predicted and measured", claim_parts),
        ("Convergence verdicts", [H.table_html(t) for t in verdicts] + conv_parts), ("Curves", curves),
        ("Stability: final metrics against the learning rate", lr_parts),
        ("Final and best values, thresholds", [H.table_html(t) for t in tables])])
    (out / "index.html").write_text(text)
    terminal = [t for t in (overview, problems, provenance, fits, repeats) if t]
    return Report(groups, primary, terminal + [claim_table(c) for c in claims], out / "index.html", figures)


def _save(data: bytes, path: Path, saved: list[Path]) -> str:
    path.write_bytes(data)
    saved.append(path)
    return H.figure_html(data, path.name)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


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
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    missing = [p for p in args.paths if not p.exists()]
    if missing:
        console.print(f"[red]no such folder:[/] {', '.join(map(str, missing))}", highlight=False)
        return 1
    t0 = time.perf_counter()
    try:
        report = build(args.paths, args.out or args.paths[0] / "report")
    except (FileNotFoundError, ValueError) as e:  # no runs; a claim.json that is not one
        console.print(f"[red]{e}[/]", highlight=False)
        return 1
    for table in report.tables:
        console.print(rich_table(table))
    console.print(f"report: {report.html} ({len(report.figures)} figures, {time.perf_counter() - t0:.1f} s)",
                  highlight=False, soft_wrap=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
