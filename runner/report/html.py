"""The report's tables, as rows of text shared by the HTML pages and the terminal, and the pages
themselves, each one self-contained file: static.html with the figures embedded as base64 PNG,
index.html with them as interactive plots (`interactive`, plotly.js inlined)."""

from __future__ import annotations

import base64
import html
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runner.report.fit import NAMES, group_fit, value_text
from runner.report.results import UNFINISHED, Group, Run
from runner.report.targets import NOTE, reached_text
from runner.report.text import mean_ci
from runner.run.provenance import differing, flatten

STATUSES = ("completed", "diverged", "failed", "interrupted", UNFINISHED)
WHY_UNFINISHED = "no summary.json: still running, or killed before it could write one"
CI = ("mean ± 95% t-interval across seeds (geometric mean [interval] for metrics on log axes; "
      "2 seeds: their two values)")
WRAPPED = ("group", "why", "run folder", "reason", "note", "kept instead", "setting", "source")  # the rest: one line


@dataclass
class Table:
    title: str
    note: str
    header: list[str]
    rows: list[list[str]]


def status_counts(runs: Sequence[Run]) -> str:
    counts = Counter(r.status for r in runs)
    return ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])


def stopped_at(run: Run) -> int:
    """The run's last step: summary.json's `steps`, else its last record's."""
    return run.summary["steps"] if run.summary.get("steps") is not None else _last_step(run)


def steps_text(runs: Sequence[Run]) -> str:
    steps = sorted({stopped_at(r) for r in runs})
    text = str(steps[0]) if len(steps) == 1 else f"{steps[0]}-{steps[-1]}"
    if steps == [0]:  # nothing trained (a sampler): its records are at the step counts it sampled with
        logged = np.concatenate([r.columns.get("step", np.array([])) for r in runs])
        logged = logged[np.isfinite(logged)]
        text += f" (records at steps {logged.min():g}-{logged.max():g})" if logged.size else ""
    return text


def _last_step(run: Run) -> int:
    steps = run.columns.get("step")
    steps = steps[np.isfinite(steps)] if steps is not None else ()
    return int(steps[-1]) if len(steps) else 0


def unreadable_table(folders: Sequence[tuple[Path, str]]) -> Table | None:
    """The run folders (and claim files) left out of the report because a file in them cannot be used."""
    return Table("Run folders that could not be read", "left out of every number, curve and fit; each file is "
                 "read as untrusted input, and the first problem found is shown",
                 ["run folder", "why"], [[str(path), why] for path, why in folders]) if folders else None


def overview(groups: Sequence[Group], log: Collection[str] = ()) -> Table:
    """One row per group; the final value is of each group's own primary metric (tasks differ);
    metrics in `log` (drawn on log axes) get geometric means."""
    primaries = {g.label: next((r.summary["convergence"].get("conv/metric") for r in g.finished()
                                if r.summary.get("convergence")), None) for g in groups}
    same = len(set(primaries.values()) - {None}) <= 1
    name = next((p for p in primaries.values() if p), None)
    header = ["group", "runs", "steps", f"final {name}" if same else "final primary metric", "convergence fit",
              "wall time (s)"]
    rows = []
    for g in groups:
        fit = group_fit(g)
        shown = fit.kinds + (f": {NAMES[fit.measure]} {value_text(fit.stat)}" if fit.measure else "")
        primary = primaries[g.label]
        final = mean_ci((r.summary["final"].get(primary) for r in g.finished()), primary in log) if primary else "-"
        repeats = f", {len(g.repeats)} repeat{'s' * (len(g.repeats) > 1)} of a seed left out" if g.repeats else ""
        rows.append([g.label, status_counts(g.runs) + repeats, steps_text(g.runs),
                     final if same or not primary else f"{primary} {final}", shown,
                     mean_ci((r.summary.get("wall_time_s") for r in g.finished()), True)])  # times: never below 0
    return Table("Groups", f"one row per config, seeds pooled; numbers: {CI}; wall time: geometric mean [interval] "
                 "(completed and diverged runs)",
                 header, rows)


def values_table(groups: Sequence[Group], which: str, log: Collection[str] = ()) -> Table:
    metrics = list(dict.fromkeys(k for g in groups for r in g.finished() for k in r.summary.get(which, {})
                                 if not k.rsplit("/", 1)[-1].startswith("lr")))
    rows = [[g.label, *(mean_ci((r.summary[which].get(m) for r in g.finished()), m in log) for m in metrics)]
            for g in groups]
    note = "last logged value" if which == "final" else "best logged value (highest for acc and return, else lowest)"
    return Table(f"{which.capitalize()} values", f"{note}; {CI} (completed and diverged runs)", ["group", *metrics], rows)


def _reached(run: Run) -> dict[str, float | None]:
    conv = run.summary.get("convergence") or {}
    primary = conv.get("conv/metric", "primary")
    return {**{f"{primary}<{k.removeprefix('conv/steps_to_')}": v for k, v in conv.items()
               if k.startswith("conv/steps_to_") and not k.endswith("_after")},
            **{k: v["step"] for k, v in (run.summary.get("targets") or {}).items()}}


def thresholds_table(groups: Sequence[Group]) -> Table | None:
    names = list(dict.fromkeys(k for g in groups for r in g.finished() for k in _reached(r)))
    if not names:
        return None
    rows = []
    for g in groups:
        hits = [(_reached(r), stopped_at(r)) for r in g.finished()]
        rows.append([g.label, *(reached_text([h[n] for h, _ in hits if n in h], [t for h, t in hits if n in h])
                                for n in names)])
    every = sorted({c["conv/resolution"] for g in groups for r in g.finished()
                    for c in [r.summary.get("convergence") or {}] if c.get("conv/resolution")})
    resolution = f" (the metric was recorded every {'-'.join(f'{v:g}' for v in sorted({every[0], every[-1]}))} steps: the " \
                 "crossing lies up to that many steps earlier)" if every else ""
    return Table("Steps to each threshold", f"first logged step at which the metric was below the value{resolution}; "
                 f"{NOTE}", ["group", *names], rows)


def problems_table(groups: Sequence[Group]) -> Table | None:
    rows = [[str(r.path), g.label, str(r.seed), r.status, steps_text([r]),
             (r.summary.get("error") or "-") if r.summary else WHY_UNFINISHED]
            for g in groups for r in g.runs if r.status != "completed"]
    return Table("Runs that did not complete", "diverged runs are results (their curves and fits are in the "
                 "report); failed, interrupted and unfinished runs count in the curves only",
                 ["run folder", "group", "seed", "status", "steps", "why"], rows) if rows else None


def provenance_table(groups: Sequence[Group]) -> Table | None:
    """The provenance fields in which runs differ (torch version, host, GPU, threads, a dirty
    tree...), one row per combination of their values; None when every run agrees. Runs without
    a provenance record (written before runs kept one) are left out."""
    runs = [r for g in groups for r in g.runs if r.summary.get("provenance")]
    fields = differing([r.summary["provenance"] for r in runs])
    if not fields:
        return None
    combos: dict[tuple[str, ...], list[Run]] = {}
    for r in runs:
        flat = flatten(r.summary["provenance"])
        combos.setdefault(tuple(flat.get(f, "-") for f in fields), []).append(r)
    rows = [[*values, str(len(members)), ", ".join(str(m.path) for m in members[:3]) + (" ..." if len(members) > 3 else "")]
            for values, members in combos.items()]
    return Table("Where runs differ in how they ran", "provenance fields (summary.json `provenance`) that are "
                 "not the same in every run; timings compare only within equal rows", [*fields, "runs", "run folder"], rows)


def table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    wrap = [h in WRAPPED for h in table.header]  # the rest stays on one line
    body = "".join("<tr>" + "".join(f"<td{'' if w else ' class=n'}>{html.escape(c)}</td>" for c, w in zip(row, wrap))
                   + "</tr>" for row in table.rows)
    return (f"<h3>{html.escape(table.title)}</h3><p class=note>{html.escape(table.note)}</p>"
            f"<div class=scroll><table><tr>{head}</tr>{body}</table></div>")


def figure_html(png: bytes, name: str) -> str:
    data = base64.b64encode(png).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(name)}">'
            f"<figcaption>{html.escape(name)}</figcaption></figure>")


CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1700px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;
vertical-align:top}td.n{white-space:nowrap}th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}.scroll{overflow-x:auto}
h3{margin-bottom:.2em}p.note{font-size:13px;color:#555;margin-top:0}img{max-width:100%}figure{margin:1em 0}
figcaption{font-size:12px;color:#666}p.meta{font-size:13px;color:#444}figure.plotly{border-top:1px solid #eee}
figure.plotly button{font-size:11px;margin-right:3px}
figure.plotly p.title{font-size:13px;margin:.4em 0 0 0}"""


def page(title: str, meta: Sequence[str], sections: Sequence[tuple[str, Sequence[str]]], head: str = "",
         tail: str = "") -> str:
    """The whole document; `sections` are (heading, [html parts]), empty ones left out; `head` and
    `tail` (scripts) go at the end of <head> and of <body>."""
    parts = [f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style>{head}</head><body><h1>{html.escape(title)}</h1>",
             *(f"<p class=meta>{html.escape(m)}</p>" for m in meta)]
    for heading, content in sections:
        if content:
            parts += [f"<h2>{html.escape(heading)}</h2>", *content]
    return "\n".join(parts + [tail, "</body></html>"])
