"""The report's tables of convergence verdicts: per group (across seeds, runner.report.fit), per
run, and the repeats of one seed that were counted once."""

from __future__ import annotations

from collections.abc import Sequence

from runner.report.fit import NAMES, group_fit, how_text, run_fit, run_value_text, value_text, window_text
from runner.report.html import Table
from runner.report.results import Group


def fit_table(groups: Sequence[Group]) -> Table:
    primary = {id(g): next((c["conv/metric"] for r in g.finished() for c in [r.summary.get("convergence") or {}]
                            if c.get("conv/metric")), None) for g in groups}
    metrics = set(primary.values()) - {None}
    rows = []
    for g in groups:
        fit, runs = group_fit(g), [run_fit(r) for r in g.finished()]
        points = sorted({f.points for f in runs if f.points is not None})
        measure = NAMES.get(fit.measure, "-") + (f" of {primary[id(g)]}" if len(metrics) > 1 and fit.measure else "")
        rows.append([g.label, fit.kinds, measure, value_text(fit.stat), how_text(fit.stat, fit.measure),
                     window_text([f.window for f in runs]), "-".join(map(str, sorted({points[0], points[-1]}))) if points else "-",
                     fit.note or "-"])
    named = metrics.pop() if len(metrics) == 1 else "each group's primary metric"
    return Table(f"Convergence verdict of {named}, across seeds",
                 "kind: how many seeds' verdicts agree; rate: per-step factor; exponent: of the power law in t; order: "
                 "of the error in NFE; seeds of different kinds are never averaged together; repeats of a seed count once",
                 ["group", "kind (seeds)", "measure", "value [95% interval]", "interval from", "fit window", "points", "note"],
                 rows)


def runs_fit_table(groups: Sequence[Group]) -> Table:
    rows = [[g.label, str(r.seed), str(r.path), f.kind, run_value_text(f), window_text([f.window]),
             "-" if f.points is None else str(f.points), f.reason]
            for g in groups for r in g.finished() for f in [run_fit(r)]]
    return Table("Convergence verdict of each run", "the run's own fit (summary.json `convergence`) with its 95% "
                 "interval, the steps it was fitted on and how many points",
                 ["group", "seed", "run folder", "kind", "value [95% interval]", "fit window", "points", "reason"], rows)


def repeats_table(groups: Sequence[Group]) -> Table | None:
    rows = [[str(left.path), g.label, str(left.seed), left.status, str(kept.path)] for g in groups for left, kept in g.repeats]
    return Table("Repeats of one seed, counted once", "same seed and config_digest in several folders (e.g. rerun=true "
                 "into another sweep folder): the run that finished last is kept, these are left out of every number "
                 "and curve", ["run folder", "group", "seed", "status", "kept instead"], rows) if rows else None
