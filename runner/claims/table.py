"""What `runner-claim` shows and keeps of a claim: its table (one row per setting, readable at 80
columns) and `<sweep_dir>/claim.json`, the record runner-report reads to draw the theory beside
the measured curve: {"name", "source", "measure", "relation", "rows": [{"setting", "predicted",
"measured", "ci", "verdict", "runs", "reason"}], ...}; `runs` are the job folders relative to the
claim.json's own folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.table import Table

from runner.claims.measure import Row
from runner.claims.spec import Claim
from runner.run.metrics import write_json_atomic


def record(claim: Claim, rows: list[Row], sweep_dir: Path, wall: float) -> dict[str, Any]:
    """claim.json: what runner-report reads (name, source, measure, relation, rows)."""
    out = {"name": claim.name, "source": claim.source, "measure": claim.measure, "relation": claim.relation,
           "statement": claim.statement, "predict": claim.predict_text(), "tolerance": claim.tolerance,
           "wall_s": round(wall, 2),
           "rows": [{"setting": r.setting, "predicted": _plain(r.predicted), "measured": _plain(r.measured),
                     "ci": r.ci, "verdict": r.verdict, "runs": _relative(r.runs, sweep_dir), "reason": r.reason}
                    for r in rows if not r.reference],
           "reference": [{"setting": r.setting, "measured": _plain(r.measured), "runs": _relative(r.runs, sweep_dir)}
                         for r in rows if r.reference]}
    write_json_atomic(sweep_dir / "claim.json", out)
    return out


def _relative(runs: list[Path], sweep_dir: Path) -> list[str]:
    """Job folders relative to the claim's folder (where claim.json is), so the record moves with it."""
    return [os.path.relpath(run, sweep_dir) for run in runs]


def _plain(v: Any) -> Any:
    if isinstance(v, list):
        return " or ".join(map(str, v))
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "inf" if v == float("inf") else f"{v:.7g}"
    if isinstance(v, list):
        return " or ".join(map(str, v))
    return "-" if v is None else str(v)


def table(claim: Claim, rows: list[Row], wall: float) -> Table:
    t = Table(title=f"[bold]{claim.name}[/]: {claim.measure} {claim.relation} {claim.predict_text()}",
              title_justify="left", caption=f"{claim.source} · {_interval_kind(claim)} · {wall:.1f} s",
              caption_justify="left",
              expand=False, pad_edge=False)
    t.add_column("setting", overflow="fold")
    t.add_column("predicted", justify="right")
    t.add_column("measured", justify="right")
    t.add_column("interval", justify="right", overflow="fold")
    t.add_column("", justify="center")
    for r in rows:
        setting = " ".join(f"{k}={v}" for k, v in r.setting.items()) or "-"
        ci = f"[{_fmt(r.ci[0])}, {_fmt(r.ci[1])}]" if r.ci else "-"
        style = {"PASS": "green", "FAIL": "red"}.get(r.verdict, "dim")
        relation = "" if claim.relation == "==" else claim.relation + " "
        predicted = "(reference)" if r.reference else relation + _fmt(r.predicted)
        t.add_row(setting, predicted, _fmt(r.measured), ci, f"[{style}]{r.verdict}[/]")
    return t


def _interval_kind(claim: Claim) -> str:
    if claim.measure.startswith("tail/"):
        return "interval: the range of the values averaged"
    what = "95% interval of the fit" if claim.measure in ("conv/rate", "conv/exponent", "conv/order") else "no interval"
    return what + (" (pooled runs: the hull, or their range)" if claim.pool else "")
