"""A full or read-only disk: what the run says (the file, the step it stopped at, the records kept)
and how it ends: `failed`, or `interrupted` when a checkpoint lets it resume once there is space;
exit code 1 either way."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

from runner.resume import checkpoint
from runner.run.metrics import give_back

log = logging.getLogger("runner.run.job")
FULL = 64 << 10  # bytes free below which a disk counts as full
DISK_ERRORS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
               errno.EIO: "I/O error", errno.EFBIG: "file too large"}


def disk_problem(e: BaseException) -> str | None:
    """`disk full (ENOSPC)` and the like, for an error of the disk; None for any other error."""
    if isinstance(e, OSError) and e.errno in DISK_ERRORS:
        return f"{DISK_ERRORS[e.errno]} ({errno.errorcode[e.errno]})"
    return None


def free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def disk_error(e: BaseException, run_dir: Path, free: int | None, at: int | None, last: int | None) -> str | None:
    """The summary's `error` when the disk stopped the run, None when it did not. An error that is
    not the OS's (torch.save's RuntimeError on a full disk) counts when the disk is full."""
    if (problem := disk_problem(e)) is not None:
        what = f"{problem} writing {e.filename or 'a file'}"
    elif free is not None and free < FULL:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        what = f"disk full (ENOSPC: {free} bytes free in {run_dir}) when {type(e).__name__}: {first}"
    else:
        return None
    records = run_dir / "metrics.jsonl"
    where = f"at step {at}" if at is not None else "before its first record"
    kept = f"records up to step {last} are in {records}" if last is not None else f"{records} holds no records"
    return f"{what}: the run stopped {where}; {kept}"


def failed(e: Exception, summary: dict[str, Any], rec: Any, run_dir: Path, space: Path | None) -> None:
    """Record why the run failed. A full or read-only disk: what was kept, and `interrupted` when a
    checkpoint lets the run resume once there is space."""
    free = free_bytes(run_dir)  # before the reserve is given back
    give_back(space)  # first: runner.log's traceback and the summary need the space
    log.exception("run failed")
    error = disk_error(e, run_dir, free, rec.at if rec else None, rec.file.last_step if rec else None)
    if error is None:
        first_line = str(e).splitlines()[0] if str(e) else ""
        summary.update(status="failed",  # also when it raised after training (figures, assessment)
                       error=f"{type(e).__name__}: {first_line} (traceback in {run_dir / 'runner.log'})")
    elif (run_dir / checkpoint.CHECKPOINT).exists():
        summary.update(status="interrupted", error=f"{error}; the checkpoint is kept: the next start resumes from it")
    else:
        summary.update(status="failed", error=error)
