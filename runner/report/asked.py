"""What a `runner-report` call asked for beyond the report itself (--export, --baseline, --compare,
--stat, --problem), checked against the runs before any figure is drawn, and answered: the
Comparisons and Performance profiles sections, their tables for the terminal, the parquet files."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from runner.report import html as H
from runner.report.compare import COSTS, Stat, find_group, resolve
from runner.report.difference import comparison_table
from runner.report.profiles import methods, profile_figure, profile_table
from runner.report.results import Group


class Unanswerable(ValueError):
    """A request the runs cannot answer (a group or key that is not there): said before any work."""


@dataclass
class Asked:
    export: bool = False
    baseline: str | None = None
    pair: tuple[str, str] | None = None  # --compare A B: B against A
    stat: Stat = field(default_factory=lambda: Stat("final"))  # no metric: the primary one
    problem: str | None = None


@dataclass
class Answers:
    comparisons: list[str] = field(default_factory=list)  # html parts
    profiles: list[str] = field(default_factory=list)
    tables: list[H.Table] = field(default_factory=list)   # for the terminal
    exported: list[Path] = field(default_factory=list)


@dataclass
class Plan:
    """`Asked` resolved against the runs: the stat with its metric, the groups and methods named."""
    stat: Stat
    pairs: list[tuple[Group, list[Group]]]        # (baseline, groups compared with it)
    methods: tuple[dict[str, dict[str, Group]], list[str]] | None
    problem: str | None
    export: bool


def plan(asked: Asked, groups: Sequence[Group], primary: str | None) -> Plan:
    """What `asked` asks of these groups; Unanswerable when it names what is not there."""
    try:
        wanted = asked.pair or asked.baseline is not None or asked.problem
        stat = resolve(asked.stat, primary) if wanted else asked.stat
        pairs = [(find_group(groups, a, "--compare"), [find_group(groups, b, "--compare")])
                 for a, b in ([asked.pair] if asked.pair else [])]
        if asked.baseline is not None:
            base = find_group(groups, asked.baseline, "--baseline")
            pairs.append((base, [g for g in groups if g is not base]))
        found = methods(groups, asked.problem) if asked.problem else None
    except ValueError as e:
        raise Unanswerable(str(e)) from None
    known = {k for g in groups for r in g.runs for k in (*r.columns, *(r.summary.get("final") or {}))}
    if wanted and stat.metric is not None and stat.metric not in known:
        raise Unanswerable(f"--stat {stat.text()}: no run logged {stat.metric}; the metrics are: "
                           f"{', '.join(sorted(known - {'step', 'time_s'}))}")
    if found and stat.kind not in COSTS:
        raise Unanswerable(f"--problem {asked.problem}: a profile needs a cost, --stat steps:METRIC<THRESH "
                           f"(or time:, evals:), not --stat {stat.text()}")
    return Plan(stat, pairs, found, asked.problem, asked.export)


def answer(plan: Plan, groups: Sequence[Group], primary: str | None, log: Collection[str], out: Path,
           save: Callable[[Figure, str], str]) -> Answers:
    """The tables, figure and files of `plan`; `save` puts a figure in the report and returns its part."""
    got = Answers()
    for base, others in plan.pairs:
        table = comparison_table(base, others, plan.stat, primary, log)
        got.tables.append(table)
        got.comparisons.append(H.table_html(table))
    if plan.methods:
        table, ratio = profile_table(*plan.methods, plan.stat, plan.problem)
        got.tables.append(table)
        got.profiles.append(H.table_html(table))
        if len(plan.methods[1]) > 1:
            got.profiles.append(save(profile_figure(ratio, plan.stat), "fig_profile.png"))
        else:
            got.profiles.append(f"<p class=note>{plan.problem} takes one value here: a profile needs several problems</p>")
    if plan.export:
        from runner.report.export import export  # pyarrow loads on use: a fifth of a second

        got.exported = export(groups, out)
    return got
