"""The report folder: checked writable before any work, and each file put in place by rename, so a
link planted in the folder (a run folder from elsewhere may hold a `report/`) is replaced, never
written through."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from pathlib import Path


def writable(out: Path) -> None:
    """`out` as a folder this process can write in (made if need be); OSError saying why not."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder", str(out))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=out):
        pass


def write(path: Path, data: bytes) -> None:
    """A new file put in place by rename: a link planted at `path` is replaced, never written through."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def safe_name(name: str) -> str:
    """A file name part for `name` (a metric, a key): short enough for any file system."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    return safe if len(safe) <= 80 else f"{safe[:64]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
