"""Strict JSON for the run folder's files, which any reader reads the same (Python, jq, JavaScript).

JSON has no NaN or infinity: such a float is written as null, and the mapping that holds it
carries `"nonfinite": {"<key>": "nan" | "inf" | "-inf"}` naming what it was, in metrics.jsonl (per
record) and summary.json (per mapping, at any depth; in a list a non-finite value is null only).
`decode` maps them back (runner.common.runfiles reads the same for runner-report).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

NONFINITE = "nonfinite"
_WORDS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _word(value: float) -> str:
    return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"


def strict(obj: Any) -> Any:
    """`obj` as strict JSON values: a NaN or infinity becomes null, and the mapping holding it gets
    `"nonfinite": {key: "nan" | "inf" | "-inf"}` (in a list it is null only)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        out = {k: strict(v) for k, v in obj.items()}
        marks = {k: _word(v) for k, v in obj.items() if isinstance(v, float) and not math.isfinite(v)}
        return {**out, NONFINITE: marks} if marks else out
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    return obj


def encode(record: Mapping[str, Any]) -> str:
    """One metrics record as a line of strict JSON (the plain dump when every value is finite)."""
    try:
        return json.dumps(record, allow_nan=False)
    except ValueError:
        return json.dumps(strict(record), allow_nan=False)


def decode(obj: Any) -> Any:
    """The inverse of `strict` for a parsed value: each "nonfinite" entry's keys back as floats."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: decode(v) for k, v in obj.items() if k != NONFINITE}
    marks = obj.get(NONFINITE)
    for key, word in (marks.items() if isinstance(marks, dict) else ()):
        if word not in _WORDS or out.get(key) is not None:
            raise ValueError(f'"nonfinite" names {key!r} as {word!r}: expected nan, inf or -inf for a null value')
        out[key] = _WORDS[word]
    return out


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write `obj` as strict JSON to a temporary file, flush it to the disk, then rename it over
    `path`: a crash or a full disk leaves the previous file as it was (the temporary one removed)."""
    data = (json.dumps(strict(obj), indent=2, allow_nan=False) + "\n").encode()
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            done = 0
            while done < len(data):
                done += os.write(fd, data[done:])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
