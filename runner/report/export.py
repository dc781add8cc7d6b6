"""`runner-report --export`: the runs as two parquet tables that pandas, polars and duckdb read,
for one's own plots and statistics.

<out>/records.parquet is long (tidy): one row per logged value, columns `run` (the run folder),
`group` (its name in the report), `seed`, `step`, `time_s`, `grad_evals` (when any run logs
`train/grad_evals`), `metric`, `value`, then one column per config key whose value differs between
runs (`optim.lr`, `task.game`; typed: bool, int64, float64 or string, null where a run lacks the
key). A metric that a record did not log has no row; a logged NaN or infinity (a diverged value)
is a row with that value. <out>/summaries.parquet has one row per run: status, steps, wall time,
`final/<metric>` and `best/<metric>`, the convergence fit of the primary metric (kind, the measure
fitted and its value, 95% interval, window, points, reason), `steps_to/<threshold>` (null: never
reached), and the same config columns.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from runner.common.schema import is_number
from runner.report.files import write
from runner.report.fit import run_fit
from runner.report.results import Group, Run

AXES = ("step", "time_s", "train/grad_evals")  # columns of their own, not rows of `metric`
NUMERIC = ("final/", "best/", "steps_to/", "conv/value", "conv/ci_", "conv/window_", "conv/points", "steps", "wall_time_s")
FIXED = ("run", "group", "seed", "step", "time_s", "grad_evals", "metric", "value")


def export(groups: Sequence[Group], out: Path) -> list[Path]:
    """Write records.parquet and summaries.parquet of every run of `groups` into `out`."""
    members = [(g, r) for g in groups for r in g.runs]
    config = config_columns([r for _, r in members])
    paths = [out / "records.parquet", out / "summaries.parquet"]
    for path, table in zip(paths, (records_table(members, config), summaries_table(members, config))):
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        write(path, buf.getvalue())
    return paths


def config_columns(runs: Sequence[Run]) -> dict[str, pa.Array]:
    """One typed array per config key whose value is not the same in every run (one value per run)."""
    keys = list(dict.fromkeys(k for r in runs for k in r.config))
    columns = {}
    for key in keys:
        values = [r.config.get(key) for r in runs]
        if len({repr(v) for v in values}) > 1:
            name = f"config.{key}" if key in FIXED else key
            columns[name] = typed(values)
    return columns


def typed(values: list[Any], empty: pa.DataType = pa.string()) -> pa.Array:
    """`values` as one arrow type: bool, int64, float64 (ints mixed with floats) or, failing those,
    string; `empty` when every value is None."""
    known = [v for v in values if v is not None]
    if not known:
        return pa.nulls(len(values), empty)
    if known and all(isinstance(v, bool) for v in known):
        return pa.array(values, pa.bool_())
    if known and all(is_number(v) and not isinstance(v, bool) for v in known):
        ints = all(isinstance(v, int) for v in known)
        return pa.array(values, pa.int64() if ints else pa.float64())
    return pa.array([None if v is None else str(v) for v in values], pa.string())


def records_table(members: Sequence[tuple[Group, Run]], config: dict[str, pa.Array]) -> pa.Table:
    grad = any("train/grad_evals" in r.columns for _, r in members)
    names = list(dict.fromkeys(k for _, r in members for k in r.columns if k not in AXES))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("member", "step", "time_s", "grad_evals", "metric", "value")}
    for i, (_, run) in enumerate(members):
        metrics = [m for m in names if m in run.columns]
        if not metrics or "step" not in run.columns:
            continue
        values = np.column_stack([run.columns[m] for m in metrics])
        logged = np.column_stack([run.logged.get(m, np.ones(len(values), dtype=bool)) for m in metrics])
        row, col = np.nonzero(logged)  # record by record, metrics in the order of the file
        n = len(run.columns["step"])
        missing = np.full(n, np.nan)
        parts["member"].append(np.full(row.size, i))
        parts["step"].append(run.columns["step"][row])
        parts["time_s"].append(run.columns.get("time_s", missing)[row])
        parts["grad_evals"].append(run.columns.get("train/grad_evals", missing)[row])
        parts["metric"].append(np.array([names.index(m) for m in metrics])[col])
        parts["value"].append(values[row, col])
    cat = {k: np.concatenate(v) if v else np.array([]) for k, v in parts.items()}
    member = cat["member"].astype(np.int32)
    columns = {
        "run": _repeat([str(r.path) for _, r in members], member),
        "group": _repeat([g.label for g, _ in members], member),
        "seed": config_per_row(typed([r.seed for _, r in members]), member),
        "step": pa.array(cat["step"].astype(np.int64)),
        "time_s": pa.array(cat["time_s"], pa.float64(), mask=np.isnan(cat["time_s"])),
        **({"grad_evals": pa.array(cat["grad_evals"], pa.float64(), mask=np.isnan(cat["grad_evals"]))} if grad else {}),
        "metric": pa.DictionaryArray.from_arrays(pa.array(cat["metric"].astype(np.int32)), pa.array(names, pa.string())),
        "value": pa.array(cat["value"], pa.float64()),  # NaN and infinities kept as they were logged
        **{k: config_per_row(v, member) for k, v in config.items()},
    }
    return pa.table(columns)


def _repeat(texts: list[str], member: np.ndarray) -> pa.DictionaryArray:
    """One string per run, repeated on its rows, dictionary-encoded (pandas reads it as categorical)."""
    return pa.DictionaryArray.from_arrays(pa.array(member), pa.array(texts, pa.string()))


def config_per_row(per_run: pa.Array, member: np.ndarray) -> pa.Array:
    taken = per_run.take(pa.array(member))
    return taken.dictionary_encode() if pa.types.is_string(per_run.type) else taken


def summaries_table(members: Sequence[tuple[Group, Run]], config: dict[str, pa.Array]) -> pa.Table:
    rows = [summary_row(g, r) for g, r in members]
    keys = list(dict.fromkeys(k for row in rows for k in row))
    columns = {k: typed([row.get(k) for row in rows], pa.float64() if k.startswith(NUMERIC) else pa.string())
               for k in keys}
    return pa.table({**columns, **{f"config.{k}" if k in columns else k: v for k, v in config.items()}})


def summary_row(group: Group, run: Run) -> dict[str, Any]:
    s = run.summary
    fit = run_fit(run) if s.get("convergence") else None
    lo, hi = fit.ci if fit and fit.ci else (None, None)
    w0, w1 = fit.window if fit and fit.window else (None, None)
    conv = s.get("convergence") or {}
    row = {"run": str(run.path), "group": group.label, "seed": run.seed, "status": run.status,
           "error": s.get("error"), "steps": s.get("steps"), "wall_time_s": s.get("wall_time_s"),
           "conv/metric": conv.get("conv/metric"), "conv/kind": fit.kind if fit else None,
           "conv/measure": fit.measure if fit else None, "conv/value": fit.value if fit else None,
           "conv/ci_lo": lo, "conv/ci_hi": hi, "conv/window_lo": w0, "conv/window_hi": w1,
           "conv/points": fit.points if fit else None, "conv/reason": fit.reason if fit else None}
    for which in ("final", "best"):
        row.update({f"{which}/{k}": float(v) for k, v in (s.get(which) or {}).items() if is_number(v)})
    row.update({f"steps_to/{k.removeprefix('conv/steps_to_')}": v for k, v in conv.items()
                if k.startswith("conv/steps_to_") and not k.endswith("_after")})
    row.update({f"steps_to/{k}": (v or {}).get("step") for k, v in (s.get("targets") or {}).items()})
    return row
