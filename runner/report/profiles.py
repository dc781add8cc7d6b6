"""Performance profiles (Dolan and Moré, 2002; the way AlgoPerf scores training algorithms) over a
sweep of problems: `runner-report --problem KEY --stat steps:METRIC<THRESH`.

The values of the config key KEY (task.env, task.game) are the problems; the groups that differ
only in KEY are one method, named by the config keys in which methods differ. On each problem a method's cost is the median over its completed and
diverged runs of the --stat cost (steps, training time or gradient evaluations to the threshold;
a run that never got there costs infinity, so the median is infinite when half the runs or more
never did). Its ratio is that cost over the least cost of any method on the problem, and its
profile rho(tau) is the fraction of problems on which its ratio is at most tau: rho(1) is how often
it was the fastest, rho at large tau how often it got there at all. A method not run on a problem,
or a problem no method solved, counts as not solved (infinite ratio).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from runner.report.compare import COSTS, Stat, run_value
from runner.report.figures import colours, panels_figure, plain
from runner.report.html import Table
from runner.report.names import ALL, shorten
from runner.report.results import Group
from runner.report.text import number

TAUS = (1, 2, 4, 10)  # the table's columns of rho(tau)


def methods(groups: Sequence[Group], key: str) -> tuple[dict[str, dict[str, Group]], list[str]]:
    """{method: {problem: group}} and the problems in order of appearance; ValueError when `key`
    is not a config key of the groups that takes several values."""
    varying = sorted({k for g in groups for k in g.config if len({repr(h.config.get(k)) for h in groups}) > 1})
    if not any(key in g.config for g in groups):
        raise ValueError(f"--problem {key!r}: not a config key of these runs; keys that differ between groups: "
                         f"{', '.join(varying) or 'none'}")
    rests: dict[str, dict] = {}  # each method's config without KEY, by its text
    for g in groups:
        rest = {k: v for k, v in g.config.items() if k != key}
        rests.setdefault(json.dumps(rest, sort_keys=True, default=str), rest)
    differ = [k for k in dict.fromkeys(k for r in rests.values() for k in r)
              if len({repr(r.get(k)) for r in rests.values()}) > 1]
    short = shorten(differ)  # named as the report names groups: the keys that differ, shortest suffixes
    names = {text: " ".join(f"{short[k]}={r.get(k)}" for k in differ) or ALL for text, r in rests.items()}
    found: dict[str, dict[str, Group]] = {}
    for g in groups:
        rest = json.dumps({k: v for k, v in g.config.items() if k != key}, sort_keys=True, default=str)
        found.setdefault(names[rest], {})[str(g.config.get(key))] = g
    problems = list(dict.fromkeys(str(g.config.get(key)) for g in groups))
    return found, problems


def cost(group: Group, stat: Stat) -> tuple[float, int, int]:
    """The median cost over the group's finished runs (inf: half or more never got there), how many
    runs got there and how many have a value."""
    values = [v for r in group.finished() for v in [run_value(r, stat, None)] if v is not None]
    if not values:
        return math.nan, 0, 0
    return float(np.median(values)), sum(math.isfinite(v) for v in values), len(values)


def ratios(costs: dict[str, dict[str, float]], problems: Sequence[str]) -> dict[str, np.ndarray]:
    """Each method's cost over the best on each problem; inf where not solved (or not run)."""
    table = np.array([[costs[m].get(p, math.inf) for p in problems] for m in costs], dtype=float)
    table[np.isnan(table)] = math.inf
    best = table.min(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(table == best, 1.0, table / best)  # 0/0 (both at step 0) is a tie: 1
    r[:, ~np.isfinite(best)] = math.inf
    return {m: r[i] for i, m in enumerate(costs)}


def rho(r: np.ndarray, tau: float) -> float:
    return float(np.mean(r <= tau)) if r.size else math.nan


def profile_figure(ratio: dict[str, np.ndarray], stat: Stat) -> Figure:
    finite = np.concatenate([r[np.isfinite(r)] for r in ratio.values()])
    end = max(2.0, float(finite.max()) * 1.25 if finite.size else 2.0)
    handles = [Line2D([], [], color=c, lw=2, label=plain(m)) for m, c in zip(ratio, colours(len(ratio)))]
    fig, (ax,) = panels_figure(1.4, 1, handles)
    for i, ((method, r), colour) in enumerate(zip(ratio.items(), colours(len(ratio)))):
        x, y = steps(r, end)
        # profiles often coincide (two methods that never solve anything): the earlier ones are
        # drawn wider, so each shows as a stripe beside those drawn over it
        ax.plot(x, y, color=colour, lw=1.4 + 2.0 * (len(ratio) - 1 - i) / max(len(ratio) - 1, 1), gid=method)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
    ax.set(xlim=(1, end), ylim=(-0.03, 1.03), xlabel="tau: cost within this factor of the best method's",
           ylabel="fraction of problems")
    ax.grid(True, alpha=0.3, which="both")
    n = len(next(iter(ratio.values()))) if ratio else 0
    fig.suptitle(f"performance profile over {n} problems: {plain(stat.text())}\n"
                 "rho(tau) = fraction of problems on which the method's median cost is within tau of the best", fontsize=10)
    return fig


def steps(r: np.ndarray, end: float) -> tuple[np.ndarray, np.ndarray]:
    """rho(tau) of ratios `r` as the corners of its step function from tau = 1 to `end`."""
    x, y = [1.0], [rho(r, 1.0)]
    for v in np.unique(r[np.isfinite(r) & (r > 1)]):
        x += [v, v]
        y += [y[-1], rho(r, v)]
    return np.array(x + [end]), np.array(y + [y[-1]])


def profile_table(found: dict[str, dict[str, Group]], problems: Sequence[str], stat: Stat,
                  key: str) -> tuple[Table, dict[str, np.ndarray]]:
    costs, cells = {}, {}
    for m, by_problem in found.items():
        for p in problems:
            g = by_problem.get(p)
            c, reached, n = cost(g, stat) if g else (math.nan, 0, 0)
            costs.setdefault(m, {})[p] = c
            cells[m, p] = ("not run" if g is None else "-" if n == 0 else
                           f"{number(c) if math.isfinite(c) else 'never'} ({reached}/{n})")
    ratio = ratios(costs, problems)
    rows = [[m, *(f"{cells[m, p]} x{number(r, 0.1) if math.isfinite(r) else 'inf'}" for p, r in zip(problems, ratio[m])),
             *(f"{rho(ratio[m], t):.2f}" for t in TAUS)] for m in found]
    note = (f"problems: the values of {key}; cell: median {COSTS[stat.kind].replace('_', ' ')} over the runs with a value "
            "(k/n: k of the n runs got there), then xR: its ratio to the best method's on that problem; rho(tau): "
            "fraction of problems with a ratio at most tau")
    return Table(f"Performance profile: {stat.text()}", note, ["method", *(f"{key}={p}" for p in problems),
                                                              *(f"rho({t})" for t in TAUS)], rows), ratio
