"""One process at a time in a run folder: `<run_dir>/.lock`, held with flock(2) from a run's first
line to its last.

The holder writes who it is into the file (pid, host, start time, command). A second process
finds the lock taken, says who holds the folder and stops without touching anything in it. The
kernel releases the lock when its process ends, however it ends; the holder's details then stay
in the file (a clean release empties it), so the next process says whose lock it took over.
The file itself stays: removing it would let two processes lock two different files.

Hydra writes the second process's `.hydra/` record into the folder before any code of ours runs;
the holder keeps its own record from when it took the lock and puts it back when it lets go.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

LOCK = ".lock"


class FolderBusy(RuntimeError):
    """Another process holds the run folder."""


class FolderLock:
    def __init__(self, fd: int | None, path: Path, note: str | None = None):
        self.fd, self.path, self.note = fd, path, note  # note: what the taking said (a stale lock)
        self.record = _hydra_record(path.parent)

    def release(self) -> str | None:
        """Let go (the holder's `.hydra/` put back if another process's Hydra rewrote it: what
        was put back is returned, to be said)."""
        if self.fd is None:
            return None
        put_back = self._put_back()
        fd, self.fd = self.fd, None
        try:
            os.ftruncate(fd, 0)  # a clean release: the next holder has nothing to take over
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return put_back

    def _put_back(self) -> str | None:
        now = _hydra_record(self.path.parent)
        changed = sorted(name for name, data in self.record.items() if now.get(name) != data)
        for name in changed:
            path = self.path.parent / ".hydra" / name
            try:
                tmp = path.with_name(f".{name}.tmp")
                tmp.write_bytes(self.record[name])
                os.replace(tmp, path)
            except OSError:
                return f"{path} was rewritten by another process started into this folder, and could not be put back"
        return (f"{self.path.parent / '.hydra'}: {', '.join(changed)} rewritten by another process started into this "
                f"folder while this run held it: put back") if changed else None


def _hydra_record(run_dir: Path) -> dict[str, bytes]:
    """Hydra's record of the command in the folder (.hydra/*.yaml: a few KB)."""
    try:
        return {p.name: p.read_bytes() for p in (run_dir / ".hydra").glob("*.yaml") if p.is_file() and not p.is_symlink()}
    except OSError:
        return {}


def _holder(fd: int) -> dict | None:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return {}  # something, unreadable


def describe(holder: dict | None) -> str:
    if not holder:
        return "a process that has not written its details yet" if holder is None else "an unknown process"
    return (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"
            + (f" (`{holder['command']}`)" if holder.get("command") else ""))


def acquire(run_dir: Path) -> FolderLock:
    """Take `run_dir`'s lock or raise FolderBusy naming the holder. On a file system without
    locks the run goes on unlocked (`note` says so)."""
    path = run_dir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise FolderBusy(f"{run_dir} is in use by {describe(holder)} (lock file {path}). This process "
                         f"stopped and left the folder as it is: wait for that run to end, or run "
                         f"in another folder (hydra.run.dir=...)") from None
    except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            os.close(fd)
            raise
        os.close(fd)
        return FolderLock(None, path, f"{path}: this file system has no locks ({e.strerror}): nothing "
                                      f"stops another process from writing into {run_dir} at the same time")
    left = _holder(fd)
    note = None if left is None else (f"{path}: the lock of {describe(left)} was left by a process that "
                                      f"ended without releasing it: taken over")
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
          "command": " ".join([os.path.basename(sys.argv[0]) or "python", *sys.argv[1:]])[:300]}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
    except OSError:  # a full disk: the lock holds, only the details are missing
        pass
    return FolderLock(fd, path, note)
