"""The shape of summary.json that its readers rely on, checked as it is read (runner.common.runfiles
reads the file): the report, the end-of-sweep table and a sweeper's objective index it without
further checks.

Required: an object with a `status` the runner writes. Checked when present: the type of each
key a reader uses (`steps` a whole number, `final` and `best` numbers or null, the convergence
fit's numbers, pairs and texts, `targets`' steps, ...); keys no reader uses are left as they
are. The maps a reader indexes (`final`, `best`, `convergence`, `targets`) are filled with {}
when missing, so summaries of older runs, which lack some, still read.
"""

from __future__ import annotations

from typing import Any

from runner.common.runfiles import kind

STATUSES = ("completed", "diverged", "failed", "interrupted")
FINISHED = ("completed", "diverged")  # a result: the job needs no re-run
SKIPPED = ".skipped"  # in a job folder: the job was skipped, its config had finished before
TEXTS = ("error", "device", "config_digest", "run_dir", "precision")
NUMBERS = ("wall_time_s",)
MAPS = ("final", "best", "convergence", "targets", "provenance")
CONV_TEXTS = ("conv/metric", "conv/x", "conv/kind", "conv/model", "conv/law", "conv/reason")
CONV_PAIRS = ("conv/window", "conv/plateau", "conv/rate_ci", "conv/exponent_ci", "conv/order_ci")
CONV_NOT_NUMBERS = (*CONV_TEXTS, *CONV_PAIRS, "conv/local", "conv/halves")  # conv/halves: no reader


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_summary(s: Any) -> dict[str, Any]:
    """`s` if it has the shape above (maps filled in), else ValueError naming the key, what it holds
    and what was expected."""
    if not isinstance(s, dict):
        raise ValueError(f"holds {kind(s)}, not an object")
    if "status" not in s:
        raise ValueError("has no status")
    if s["status"] not in STATUSES:
        raise ValueError(f"status is {kind(s['status'])}, not one of {', '.join(STATUSES)}")
    for key in TEXTS:
        _expect(s, key, s.get(key) is None or isinstance(s[key], str), "a string or null")
    for key in NUMBERS:
        _expect(s, key, s.get(key) is None or is_number(s[key]), "a number or null")
    _expect(s, "steps", s.get("steps") is None or (isinstance(s["steps"], int) and not isinstance(s["steps"], bool)
                                                  and s["steps"] >= 0), "a whole number >= 0")
    for key in MAPS:
        _expect(s, key, isinstance(s.setdefault(key, {}), dict), "an object")
    for key in ("final", "best"):
        for metric, value in s[key].items():
            _expect(s[key], metric, value is None or is_number(value), "a number or null", f"{key}[{metric!r}]")
    _check_convergence(s["convergence"])
    for name, hit in s["targets"].items():
        where = f"targets[{name!r}]"
        _expect(s["targets"], name, isinstance(hit, dict) and is_number(hit.get("step")),
                'an object with a "step" number', where)
        for key in ("after", "time_s"):
            _expect(hit, key, hit.get(key) is None or is_number(hit[key]), "a number or null", f"{where}[{key!r}]")
    return s


def _check_convergence(conv: dict[str, Any]) -> None:
    for key, value in conv.items():
        where = f"convergence[{key!r}]"
        if key in CONV_TEXTS:
            _expect(conv, key, value is None or isinstance(value, str), "a string or null", where)
        elif key in CONV_PAIRS:
            _expect(conv, key, value is None or (isinstance(value, list) and len(value) == 2
                                                 and all(v is None or is_number(v) for v in value)),
                    "null or a list of two numbers", where)
        elif key == "conv/local":
            _expect(conv, key, value is None or (isinstance(value, list) and all(
                isinstance(row, list) and len(row) == 3 and all(v is None or is_number(v) for v in row)
                for row in value)), "null or a list of [step, rate, exponent] rows", where)
        elif key == "conv/points":  # an index into the records
            _expect(conv, key, value is None or (isinstance(value, int) and not isinstance(value, bool)),
                    "a whole number or null", where)
        elif key.startswith("conv/") and key not in CONV_NOT_NUMBERS:
            _expect(conv, key, value is None or is_number(value), "a number or null", where)


def _expect(mapping: dict[str, Any], key: str, ok: bool, expected: str, where: str | None = None) -> None:
    if not ok:
        raise ValueError(f"{where or key} is {kind(mapping.get(key))}, not {expected}")
