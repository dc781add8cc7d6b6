"""What a start finds in its folder and cannot use is kept aside, never deleted, with a warning on
the terminal and in runner.log: a file that is not a valid checkpoint of this config becomes
`checkpoint.pt.rejected-<time>`, records that a run from step 0 would overwrite become
`metrics.jsonl.replaced-<time>`, and a resume cuts the lines of `metrics.jsonl` that are not
records (the half line a crash or a full disk leaves at its end).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text

from runner.common.console import for_output

RECORDS = "metrics.jsonl"
log = logging.getLogger(__name__)
console = for_output(Console())


def warn(message: str) -> None:
    log.warning(message)
    console.print(Text("warning: ", style="yellow") + Text(message), soft_wrap=True)


def set_aside(path: Path, kind: str) -> Path:
    """Rename `path` (a link itself, never what it points to) to `<name>.<kind>-<time>`."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = path.with_name(f"{path.name}.{kind}-{stamp}"), 1
    while target.exists() or target.is_symlink():  # two in one second: keep both
        n += 1
        target = path.with_name(f"{path.name}.{kind}-{stamp}-{n}")
    os.replace(path, target)
    return target


def _not_regular(path: Path) -> str | None:
    if path.is_symlink():
        return f"is a link (to {os.readlink(path)}), not a file of this folder"
    return None if path.is_file() else "is not a regular file"


def start_over(run_dir: Path, why: str) -> None:
    """Before a run starts from step 0 in a folder that an earlier attempt used: the records it
    left (`why` they cannot be resumed) are set aside instead of overwritten."""
    path = run_dir / RECORDS
    if not (path.exists() or path.is_symlink()):
        return
    odd = _not_regular(path)
    if odd is None:
        with path.open("rb") as f:
            count = sum(1 for line in f if line.strip())
        if count == 0:
            return
    aside = set_aside(path, "replaced")
    what = odd or f"holds {count} records of an earlier attempt"
    warn(f"{path} {what} and {why}: set aside as {aside.name}; starting from step 0")


def _is_record(line: bytes) -> bool:
    """A whole record: a line without its newline was cut short, even where what is there parses."""
    if not line.endswith(b"\n"):
        return False
    try:
        record = json.loads(line)
    except ValueError:  # also a UnicodeDecodeError
        return False
    return isinstance(record, dict) and type(record.get("step")) is int


def keep_readable(run_dir: Path, step: int) -> None:
    """Before a resume from the checkpoint at `step` reads the records: lines that are not records
    are cut, with a message. A half last line is only cut; when other lines are cut too, the file
    as it was is kept aside as `metrics.jsonl.rejected-<time>`."""
    path = run_dir / RECORDS
    if not (path.exists() or path.is_symlink()):
        return
    if (odd := _not_regular(path)) is not None:
        aside = set_aside(path, "rejected")
        warn(f"{path} {odd}: set aside as {aside.name}; resuming from step {step} without earlier records")
        return
    parts = path.read_bytes().split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]] + [parts[-1]]  # the last: what follows the last newline
    used = [i for i, line in enumerate(lines) if line.strip()]
    bad = [i for i in used if not _is_record(lines[i])]
    if not bad:
        return
    drop = set(bad)
    good = b"".join(lines[i] for i in used if i not in drop)
    if bad == used[-1:]:
        what, kept = "ends in a line that is not a whole record (a write cut short)", ""
    else:
        what = f"has {len(bad)} lines that are not records (line {', '.join(str(i + 1) for i in bad[:5])}" \
               f"{', ...' if len(bad) > 5 else ''})"
        kept = f" (the file as it was: {set_aside(path, 'rejected').name})"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(good)
    os.replace(tmp, path)
    warn(f"{path} {what}: cut{kept}; resuming from step {step}")
