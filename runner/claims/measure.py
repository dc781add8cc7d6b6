"""What a claim measured in its runs, what it predicted for them, and the verdict of each row.

A run's value is read from its `summary.json` (`conv/...` from `convergence`, `final/` and `best/`
metrics, `status`, `steps`) or, for `tail/<metric>`, from `metrics.jsonl`. The prediction is the
claim's expression evaluated on that run's own resolved config (`.hydra/config.yaml`) and its
summary. A row is one setting of the sweep (pooled keys merged): it PASSes when every run in it
does. A fitted rate, exponent or order without its interval FAILs (the fit said `none`, or the
summary predates intervals), saying why.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from runner.common.expr import Expr, ExprError
from runner.claims.spec import Claim
from runner.common.runfiles import Unreadable, read_yaml
from runner.run.metrics import read_records

INTERVAL = ("conv/rate", "conv/exponent", "conv/order")  # measures that must come with conv/<x>_ci


@dataclass
class Measured:
    value: Any = None  # float, str, or None when there is nothing to compare
    ci: list[float] | None = None
    reason: str = ""  # why value is None, or a remark (never reached: inf)


@dataclass
class Row:
    setting: dict[str, Any]
    runs: list[Path]
    predicted: Any = None
    measured: Any = None
    ci: list[float] | None = None
    verdict: str = "FAIL"
    reason: str = ""
    reference: bool = False  # the setting others are compared with (not a verdict row)
    per_run: list[tuple[Measured, Any, bool]] = field(default_factory=list)


def read_summary(run: Path) -> dict[str, Any]:
    """The job's summary.json checked as every reader checks it ({} when missing or unreadable)."""
    from runner.sweep.summary import read_summary as checked

    s = checked(run)
    return s if isinstance(s, dict) else {}


def measure(claim: Claim, run: Path, summary: Mapping[str, Any] | None = None) -> Measured:
    s = read_summary(run) if summary is None else summary
    if not s:
        return Measured(reason=f"no summary.json in {run} (the run did not finish)")
    if s.get("status") not in ("completed", "diverged") and claim.measure != "status":
        return Measured(reason=f"run {s.get('status')}: {s.get('error')}")
    m = claim.measure
    conv = s.get("convergence") or {}
    if m in ("status", "steps"):
        return Measured(s.get(m))
    if m.startswith("conv/steps_to_"):
        step = conv.get(m)
        if m not in conv:
            there = [k for k in conv if k.startswith("conv/steps_to_") and not k.endswith("_after")]
            return Measured(reason=f"{m} not in the summary; thresholds there: {', '.join(there) or 'none'}")
        return Measured(float(step)) if step is not None else \
            Measured(math.inf, reason=f"never reached in {s.get('steps')} steps")
    if m.startswith("conv/"):
        value = conv.get(m)
        if value is None:
            why = conv.get("conv/reason", "no reason given")
            return Measured(reason=f"no {m}: conv/kind={conv.get('conv/kind')} ({why})")
        if m in INTERVAL:
            ci = conv.get(f"{m}_ci")
            if not ci:
                return Measured(value, reason=f"{m}={value:.6g} has no interval ({m}_ci missing; "
                                              f"conv/kind={conv.get('conv/kind')})")
            return Measured(float(value), [float(ci[0]), float(ci[1])])
        return Measured(value)
    kind, metric = m.split("/", 1)
    if kind in ("final", "best"):
        values = s.get(kind) or {}
        if metric not in values:
            return Measured(reason=f"{metric} not recorded; {kind} has {', '.join(sorted(values)) or 'nothing'}")
        return Measured(values[metric])
    return _tail(run, metric, s)


def _tail(run: Path, metric: str, s: Mapping[str, Any]) -> Measured:
    """Mean of a metric's records in the second half of the run, with their range."""
    try:
        records = read_records(run / "metrics.jsonl")
    except OSError as e:
        return Measured(reason=f"metrics.jsonl of {run} not read ({e.strerror or e})")
    except ValueError as e:
        return Measured(reason=str(e))
    half = (s.get("steps") or 0) / 2
    values = [float(r[metric]) for r in records  # NaN and inf (null + "nonfinite" on disk) count: they are results
              if isinstance(r.get(metric), (int, float)) and isinstance(r.get("step"), (int, float)) and r["step"] >= half]
    if not values:
        return Measured(reason=f"{metric}: no records in the second half of the run")
    return Measured(statistics.fmean(values), [min(values), max(values)])


def scope(run: Path, summary: Mapping[str, Any], reference: Any = None) -> dict[str, Any]:
    """What the claim's expressions may read: the job's resolved config and its summary."""
    try:  # the safe loader (no tags run), then OmegaConf for Hydra's interpolations
        found, raw = read_yaml(run / ".hydra", "config.yaml")
    except Unreadable as e:
        raise ValueError(f"{run}: {e}") from None
    if not found or not isinstance(raw, dict):
        raise ValueError(f"{run}: .hydra/config.yaml missing or not a mapping")
    cfg = OmegaConf.to_container(OmegaConf.create(raw), resolve=True)
    return {**cfg, "summary": dict(summary), "final": summary.get("final") or {}, "best": summary.get("best") or {},
            "conv": summary.get("convergence") or {}, "reference": reference}


def predict(claim: Claim, names: dict[str, Any]) -> Any:
    """The prediction for one run (defines evaluated in order, then `predict`)."""
    names = dict(names)
    for name, expr in claim.define.items():
        names[name] = expr.evaluate(names)
    p = claim.predict
    return p.evaluate(names) if isinstance(p, Expr) else p


def holds(claim: Claim, value: Any, predicted: Any) -> bool:
    if claim.is_word:
        return value in predicted if claim.relation == "in" else value == predicted
    if isinstance(predicted, bool) or not isinstance(predicted, (int, float)) or not isinstance(value, (int, float)):
        return False
    if math.isnan(value) or math.isnan(predicted):
        return False
    tol = claim.tol(predicted) if math.isfinite(predicted) else 0.0
    return {"==": abs(value - predicted) <= tol, "<=": value <= predicted + tol, ">=": value >= predicted - tol,
            "<": value < predicted + tol, ">": value > predicted - tol}[claim.relation]


def judge(claim: Claim, row: Row, reference: Any = None) -> Row:
    """Measure every run of a row, predict for it, and decide the row."""
    failures = []
    for run in row.runs:
        s = read_summary(run)
        got = measure(claim, run, s)
        try:
            expected = predict(claim, scope(run, s, reference)) if s else None
        except (ExprError, OSError, ValueError) as e:  # ValueError: the job's config.yaml unreadable
            expected, got.reason = None, got.reason or f"prediction: {e}"
        ok = got.value is not None and expected is not None and not (
            claim.measure in INTERVAL and got.ci is None) and holds(claim, got.value, expected)
        row.per_run.append((got, expected, ok))
        if not ok:
            failures.append(got.reason or
                            f"measured {_short(got.value)} vs predicted {claim.relation} {_short(expected)}")
    if not row.runs:
        failures.append("no finished job for this setting in the sweep folder")
    values = [g.value for g, _, _ in row.per_run if g.value is not None]
    cis = [g.ci for g, _, _ in row.per_run if g.ci]
    row.predicted = row.per_run[0][1] if row.per_run else None
    if values and all(isinstance(v, (int, float)) for v in values):
        row.measured = statistics.median(values)
        row.ci = [min(c[0] for c in cis), max(c[1] for c in cis)] if cis else \
            ([min(values), max(values)] if len(values) > 1 else None)
    elif values:
        row.measured = values[0] if len(set(map(str, values))) == 1 else ", ".join(map(str, values))
    row.verdict = "PASS" if not failures and row.runs else "FAIL"
    if failures:
        row.reason = failures[0] + (f" ({len(failures)} of {len(row.runs)} runs)" if len(row.runs) > 1 else "")
    elif any(g.reason for g, _, _ in row.per_run):
        row.reason = next(g.reason for g, _, _ in row.per_run if g.reason)
    return row


def _short(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)
