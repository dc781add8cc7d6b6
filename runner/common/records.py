"""A run's metrics.jsonl read back as columns, one float array per key, for runner-report.

Each line must be a JSON object with a number `step` and numbers for values (null with the
record's "nonfinite" naming it: a NaN or infinity, runner.common.strict_json; older files: bare NaN). A last line cut short by a kill is dropped; any other line that is
not such a record makes the file `Unreadable`, with its line number and what is wrong.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from runner.common.runfiles import MAX_RECORDS_BYTES, Unreadable, kind, read_text
from runner.common.schema import is_number
from runner.common.strict_json import decode

NAME = "metrics.jsonl"
VALUE_TYPES = {int, float, type(None)}


def read_columns(folder: Path) -> dict[str, np.ndarray]:
    """`folder`/metrics.jsonl as {key: values} (NaN where a record lacks the key); {} when absent."""
    return read_logged(folder)[0]


def read_logged(folder: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The columns of `read_columns`, and for each key that some record lacks, True where a record
    has it: a NaN that was logged (a diverged value) and one that was not are then told apart."""
    text = read_text(folder, NAME, MAX_RECORDS_BYTES)
    lines = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()] if text else []
    records = _parse(lines)
    for i in [i for i, r in enumerate(records) if "nonfinite" in r]:  # non-finite values, named (strict JSON)
        try:
            records[i] = decode(records[i])
        except ValueError as e:
            raise Unreadable(f"{NAME} line {lines[i][0]}: {e}") from None
    _check(records, lines)
    return _columns(records) if records else ({}, {})


def _parse(lines: list[tuple[int, str]]) -> list[dict[str, Any]]:
    try:  # one parser call for the whole file: several times faster than one per line
        records = json.loads("[" + ",".join(line for _, line in lines) + "]")
        if len(records) == len(lines) and all(type(r) is dict for r in records):
            return records
    except (ValueError, RecursionError):
        pass
    records = []  # line by line, to say which line is wrong
    for n, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError) as e:
            if n == len(lines) - 1:  # a kill cut the last line short
                break
            raise Unreadable(f"{NAME} line {number}: not a JSON record ({e})") from None
        if type(record) is not dict:
            raise Unreadable(f"{NAME} line {number} holds {kind(record)}, not a record")
        records.append(record)
    return records


def _check(records: list[dict[str, Any]], lines: list[tuple[int, str]]) -> None:
    """Every record has a number step, every value is a number or null (a type check in C first:
    a long file costs a few ms more; the slow loop runs only to name what is wrong)."""
    steps_ok = all(is_number(r.get("step")) for r in records)
    if steps_ok and set(map(type, itertools.chain.from_iterable(map(dict.values, records)))) <= VALUE_TYPES:
        return
    for r, (number, _) in zip(records, lines):
        if not is_number(r.get("step")):
            raise Unreadable(f"{NAME} line {number}: step is {kind(r.get('step'))}, not a number")
        bad = next((k for k, v in r.items() if type(v) not in VALUE_TYPES), None)
        if bad is not None:
            raise Unreadable(f"{NAME} line {number}: {bad!r} is {kind(r[bad])}, not a number")


def _columns(records: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    # Most records carry the same keys (eval metrics come every eval_every steps): those are read
    # with one itemgetter call each, the rest key by key.
    usual = records[len(records) // 2].keys()
    odd = [i for i, r in enumerate(records) if r.keys() != usual]
    if 2 * len(odd) > len(records):  # the middle record was itself an odd one (an eval step): the commonest keys
        common = Counter(frozenset(records[i]) for i in odd).most_common(1)[0][0]
        usual = next(records[i] for i in odd if records[i].keys() == common).keys()
        odd = [i for i, r in enumerate(records) if r.keys() != usual]
    keys = list(dict.fromkeys(itertools.chain(usual, *(records[i] for i in odd))))
    table = np.full((len(records), len(keys)), np.nan)
    rows = np.ones(len(records), dtype=bool)
    rows[odd] = False
    try:
        if rows.any():
            get = itemgetter(*usual)
            values = [get(r) for r, ok in zip(records, rows) if ok]
            table[rows, :len(usual)] = np.array(values, dtype=float).reshape(-1, len(usual))
        for i in odd:
            table[i] = np.array([records[i].get(k) for k in keys], dtype=float)
    except OverflowError:  # an integer beyond the range of a float
        raise Unreadable(f"{NAME}: a value too large for a float") from None
    logged = {}
    for j, k in enumerate(keys):
        has = [k in records[i] for i in odd]
        if k not in usual or not all(has):
            logged[k] = rows.copy() if k in usual else np.zeros(len(records), dtype=bool)
            logged[k][odd] = has
    return {k: table[:, j] for j, k in enumerate(keys)}, logged
