"""A claim file (claims/*.yaml): what it may say, read and checked before anything runs.

    name: bilinear_simultaneous_gda          # = the file's stem
    statement: Simultaneous GDA on a bilinear game spirals out at sqrt(1 + eta^2 sigma_max^2) per step.
    source: Gidel et al. 2019, Negative Momentum for Improved Game Dynamics, AISTATS
    fast: true                               # `runner-claim --fast` (CI): seconds, and every row passes as
                                             # measured (a claim with a row failing for a reason in its
                                             # notes stays out, so that CI failing means a regression)
    experiment: {task: gan, overrides: {task.game: bilinear, task.scheme: simultaneous}}
    sweep: {optim.lr: [0.05, 0.1, 0.2]}      # the settings: the product of these values
    pool: []                                 # sweep keys pooled into one row (e.g. [seed])
    measure: conv/rate                       # see MEASURES
    define: {eta: optim.lr}                  # names for parts of the prediction, in order
    predict: sqrt(1 + eta**2 * task.sv_max**2)
    relation: "=="                           # == <= >= < > (kinds and statuses: == or in)
    tolerance: {abs: 1.0e-4, reason: why this much}
    reference: {task.method: npg}            # optional: `reference` in predict = that setting's measured value
    notes: where theory and measurement part, and why

Every problem of a file is reported at once, each naming the file, the key, the value found and
what is allowed (ClaimError). Expressions are checked by runner.common.expr (never eval'd).
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.common.expr import CONSTANTS, FUNCTIONS, Expr, ExprError, parse

KEYS = ("name", "statement", "source", "fast", "experiment", "sweep", "pool", "measure", "define", "predict",
        "relation", "tolerance", "reference", "notes")
REQUIRED = ("name", "statement", "source", "experiment", "measure", "predict", "relation")
KINDS = ("linear", "sublinear", "diverging", "stalled", "cycling", "none")  # conv/kind (the verdict contract)
STATUSES = ("completed", "diverged", "failed", "interrupted")
MEASURES = {  # pattern -> what it is; the interval shown beside it
    r"conv/(rate|exponent|order)": "a fitted rate, exponent or order, with its 95% interval conv/<x>_ci",
    r"conv/(t0|change|points|r2|se)": "another value of the convergence fit",
    r"conv/steps_to_[0-9.eE+-]+": "first logged step below the threshold (never reached: infinite)",
    r"conv/(kind|model)": "the verdict of the fit (a word)",
    r"(final|best)/\w+/[\w.-]+": "the last / best value of a metric (summary.json)",
    r"tail/\w+/[\w.-]+": "mean of a metric over the second half of the run, with the range of its values",
    r"status": "the run's ending (completed, diverged, ...)",
    r"steps": "steps the run took",
}
WORDS = {"conv/kind": KINDS, "status": STATUSES, "conv/model": ("exponential", "power", "shifted_power")}
RELATIONS = ("==", "<=", ">=", "<", ">", "in")
ROOTS = ("summary", "final", "best", "conv", "reference")  # names read from the run, not the config


class ClaimError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Claim:
    name: str
    path: Path
    statement: str
    source: str
    task: str
    overrides: dict[str, Any]
    sweep: dict[str, list[Any]]
    measure: str
    relation: str
    predict: Expr | str | list[str] | float
    define: dict[str, Expr] = field(default_factory=dict)
    tolerance: dict[str, Any] = field(default_factory=dict)
    pool: list[str] = field(default_factory=list)
    reference: dict[str, Any] = field(default_factory=dict)
    fast: bool = False
    notes: str = ""

    @property
    def is_word(self) -> bool:
        return self.measure in WORDS

    def settings(self) -> list[dict[str, Any]]:
        """Every combination of the swept values, in file order (one job each)."""
        keys = list(self.sweep)
        return [dict(zip(keys, values)) for values in itertools.product(*self.sweep.values())]

    def tol(self, predicted: float) -> float:
        return max(float(self.tolerance.get("abs", 0.0)), float(self.tolerance.get("rel", 0.0)) * abs(predicted))

    def predict_text(self) -> str:
        p = self.predict
        return p.text if isinstance(p, Expr) else " or ".join(p) if isinstance(p, list) else str(p)


def load(path: Path) -> Claim:
    """Read and check one claim file; ClaimError lists every problem found."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ClaimError([f"{path}: cannot be read as YAML: {e}"]) from None
    if not isinstance(raw, dict):
        raise ClaimError([f"{path}: a claim is a mapping of {', '.join(KEYS)}; found {type(raw).__name__}"])
    problems: list[str] = []

    def bad(key: str, value: Any, allowed: str) -> None:
        problems.append(f"{path}: {key}={value!r}: {allowed}")

    for key in raw:
        if key not in KEYS:
            bad(key, raw[key], f"unknown key; allowed: {', '.join(KEYS)}")
    for key in REQUIRED:
        if key not in raw:
            problems.append(f"{path}: {key}: missing (required: {', '.join(REQUIRED)})")
    for key in ("name", "statement", "source"):
        if key in raw and not (isinstance(raw[key], str) and raw[key].strip()):
            bad(key, raw[key], "must be a non-empty string")
    if isinstance(raw.get("name"), str) and raw["name"] != path.stem:
        bad("name", raw["name"], f"must be the file's name without .yaml ({path.stem!r}): claims are found by file")
    if not isinstance(raw.get("fast", False), bool):
        bad("fast", raw["fast"], "must be true or false")
    task, overrides = _experiment(raw.get("experiment"), bad)
    sweep = _sweep(raw.get("sweep", {}), bad)
    pool = raw.get("pool", []) or []
    if not (isinstance(pool, list) and all(k in sweep for k in pool)):
        bad("pool", pool, f"must be a list of sweep keys ({', '.join(sweep) or 'none'})")
    reference = raw.get("reference", {}) or {}
    if not isinstance(reference, dict) or any(k not in sweep or v not in sweep[k] for k, v in reference.items()):
        bad("reference", reference, "must map sweep keys to one of their swept values")
    measure = raw.get("measure")
    if measure is not None and not any(re.fullmatch(p, str(measure)) for p in MEASURES):
        bad("measure", measure, "unknown measure; allowed: " + "; ".join(f"{p} ({w})" for p, w in MEASURES.items()))
    relation = raw.get("relation")
    word = measure in WORDS
    allowed_rel = ("==", "in") if word else RELATIONS[:-1]
    if relation is not None and relation not in allowed_rel:
        bad("relation", relation, f"allowed for measure {measure}: {', '.join(allowed_rel)}")
    define = _define(raw.get("define", {}) or {}, bad)
    predict = _predict(raw.get("predict"), measure, relation, bad)
    tolerance = _tolerance(raw.get("tolerance"), relation, word, bad)
    if isinstance(predict, Expr) and "reference" in predict.names and not reference:
        bad("predict", predict.text, "uses `reference` but the claim has no reference setting")
    if problems:
        raise ClaimError(problems)
    return Claim(name=raw["name"], path=path, statement=raw["statement"].strip(), source=raw["source"].strip(),
                 task=task, overrides=overrides, sweep=sweep, measure=measure, relation=relation, predict=predict,
                 define=define, tolerance=tolerance, pool=pool, reference=reference, fast=raw.get("fast", False),
                 notes=str(raw.get("notes", "") or "").strip())


def _experiment(exp: Any, bad) -> tuple[str, dict[str, Any]]:
    if not (isinstance(exp, dict) and isinstance(exp.get("task"), str)):
        bad("experiment", exp, "must be {task: NAME, overrides: {key: value, ...}}")
        return "", {}
    overrides = exp.get("overrides", {}) or {}
    extra = [k for k in exp if k not in ("task", "overrides")]
    if extra:
        bad(f"experiment.{extra[0]}", exp[extra[0]], "unknown key; allowed: task, overrides")
    if not isinstance(overrides, dict):
        bad("experiment.overrides", overrides, "must map config keys to values (task.game: bilinear)")
        return exp["task"], {}
    for key in overrides:
        if key in ("task", "logger") or str(key).startswith("hydra.sweep"):
            bad(f"experiment.overrides.{key}", overrides[key], "set by the claim command; remove it")
    return exp["task"], dict(overrides)


def _sweep(sweep: Any, bad) -> dict[str, list[Any]]:
    if not isinstance(sweep, dict):
        bad("sweep", sweep, "must map config keys to lists of values ({optim.lr: [0.05, 0.1]})")
        return {}
    out = {}
    for key, values in sweep.items():
        if not (isinstance(values, list) and values):
            bad(f"sweep.{key}", values, "must be a non-empty list of values")
        else:
            out[key] = values
    return out


def _define(define: Any, bad) -> dict[str, Expr]:
    if not isinstance(define, dict):
        bad("define", define, "must map names to expressions")
        return {}
    out = {}
    for name, text in define.items():
        if not (isinstance(name, str) and name.isidentifier()) or name in (*FUNCTIONS, *CONSTANTS, *ROOTS):
            taken = ", ".join((*FUNCTIONS, *CONSTANTS, *ROOTS))
            bad(f"define.{name}", text, f"the name must be an identifier other than {taken}")
            continue
        try:
            out[name] = parse(str(text))
        except ExprError as e:
            bad(f"define.{name}", text, str(e))
    return out


def _predict(predict: Any, measure: Any, relation: Any, bad) -> Expr | str | list[str] | float | None:
    if predict is None:
        return None
    if measure in WORDS:
        words = predict if isinstance(predict, list) else [predict]
        unknown = [w for w in words if w not in WORDS[measure]]
        if unknown or (relation == "in") != isinstance(predict, list):
            bad("predict", predict, f"for {measure}: one of {', '.join(WORDS[measure])} (relation ==), "
                                    f"or a list of them (relation in)")
        return predict
    if isinstance(predict, (int, float)) and not isinstance(predict, bool):
        return float(predict)
    try:
        return parse(str(predict))
    except ExprError as e:
        bad("predict", predict, str(e))
        return None


def _tolerance(tol: Any, relation: Any, word: bool, bad) -> dict[str, Any]:
    if tol is None:
        if relation == "==" and not word:
            bad("tolerance", None, "required for == on a number: {abs: ..., rel: ..., reason: why this much}")
        return {}
    if word:
        bad("tolerance", tol, f"a word measure is compared exactly; remove the tolerance")
        return {}
    if not isinstance(tol, dict) or set(tol) - {"abs", "rel", "reason"} or not ({"abs", "rel"} & set(tol)):
        bad("tolerance", tol, "must be {abs: number and/or rel: number, reason: text}")
        return {}
    for key in ("abs", "rel"):
        v = tol.get(key, 0.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 and math.isfinite(v)):
            bad(f"tolerance.{key}", v, "must be a finite number >= 0")
    if not (isinstance(tol.get("reason"), str) and tol["reason"].strip()):
        bad("tolerance.reason", tol.get("reason"), "say why this tolerance (a regime, a transient, rounding)")
    return tol


def discover(folder: Path) -> list[Path]:
    """Every claim file of a folder: a new claim is one new file."""
    return sorted(Path(folder).glob("*.yaml"))
