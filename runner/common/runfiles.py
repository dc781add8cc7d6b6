"""A run folder's files, read as untrusted input: the report, the end-of-sweep table, a sweeper's
objective and a run's closing line read through here.

A run folder may come from anywhere (a copied sweep, a colleague's tarball), so a file in it may be
missing, empty, cut short, not UTF-8, not JSON or YAML, of the wrong shape, huge, a FIFO, or a
link out of the folder. Each of these is an `Unreadable` error whose message names the file and
what is wrong, for the reader to show beside the run; never a traceback. Nothing read can run
code (YAML: the safe loader, no aliases; no pickle) or lead a reader outside the folder (a link
that resolves outside it is refused, not followed).

Non-finite numbers: metrics.jsonl and summary.json are strict JSON, a NaN or infinity written as
null with `"nonfinite": {"<key>": "nan" | "inf" | "-inf"}` in the mapping that holds it
(runner.common.strict_json); they are read back as floats. Older folders hold bare `NaN`/`Infinity`,
which Python's parser reads as the same floats.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from runner.common.strict_json import decode

MAX_BYTES = 64 << 20  # summary.json, .hydra/*.yaml, claim.json: kilobytes when the runner writes them
MAX_RECORDS_BYTES = 4 << 30  # metrics.jsonl: a long run logged every step is hundreds of MB
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser when PyYAML has it: same rules, faster


class Unreadable(ValueError):
    """A file of a run folder that cannot be used as it is; the message names the file and why."""


def read_text(folder: Path, name: str, limit: int = MAX_BYTES) -> str | None:
    """`folder/name` as text; None when there is no such file. A link is followed only while it
    stays inside `folder`."""
    path = Path(folder) / name
    try:
        real, home = path.resolve(), Path(folder).resolve()
    except (OSError, RuntimeError) as e:  # a loop of links
        raise Unreadable(f"{name}: {e}") from None
    if not real.is_relative_to(home):
        raise Unreadable(f"{name} is a link to {real}, outside the run folder: not read")
    try:  # O_NONBLOCK: a FIFO put there does not hang the reader; fstat below refuses it
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise Unreadable(f"{name}: {e.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise Unreadable(f"{name} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        if info.st_size > limit:
            raise Unreadable(f"{name} is {size_text(info.st_size)}, more than the {size_text(limit)} a reader takes")
        data = f.read(info.st_size)  # what is there now: records appended meanwhile wait for the next read
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Unreadable(f"{name} is not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r})") from None


def read_json(folder: Path, name: str) -> tuple[bool, Any]:
    """(found, value) of the JSON file `folder/name`, non-finite numbers restored."""
    text = read_text(folder, name)
    if text is None:
        return False, None
    return True, parse_json(text, name)


def parse_json(text: str, name: str) -> Any:
    if not text.strip():
        raise Unreadable(f"{name} is empty")
    try:
        value = json.loads(text)
    except RecursionError:
        raise Unreadable(f"{name}: nested too deeply to be one of the runner's files") from None
    except ValueError as e:
        raise Unreadable(f"{name}: not JSON ({e})") from None
    try:
        return decode(value)
    except RecursionError:
        raise Unreadable(f"{name}: nested too deeply to be one of the runner's files") from None
    except ValueError as e:
        raise Unreadable(f"{name}: {e}") from None


def read_yaml(folder: Path, name: str) -> tuple[bool, Any]:
    """(found, value) of the YAML file `folder/name`, read with the safe loader (plain values only:
    a `!!python/...` tag is an error, not a call). Aliases are refused: Hydra never writes them, and
    a few nested ones expand to more values than memory holds."""
    text = read_text(folder, name)
    if text is None:
        return False, None
    if not text.strip():
        raise Unreadable(f"{name} is empty")
    try:
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=LOADER)):
            raise Unreadable(f"{name} uses YAML aliases (*name), which Hydra never writes: not read")
        return True, yaml.load(text, Loader=LOADER)
    except yaml.YAMLError as e:
        raise Unreadable(f"{name}: not valid YAML ({yaml_problem(e)})") from None


def yaml_problem(e: yaml.YAMLError) -> str:
    """PyYAML's error in one line: the problem and where."""
    if isinstance(e, yaml.MarkedYAMLError) and e.problem:
        where = f" at line {e.problem_mark.line + 1}, column {e.problem_mark.column + 1}" if e.problem_mark else ""
        return f"{e.problem}{where}"
    return " ".join(str(e).split())


def kind(value: Any) -> str:
    """What a JSON value is, for a message: `a string ('big')`, `a list`, `null`."""
    if value is None:
        return "null"
    name = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")
    return f"{name} ({value!r:.40})" if isinstance(value, (str, bool)) else name


def size_text(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"
