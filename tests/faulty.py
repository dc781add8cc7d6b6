"""Classifiers that misbehave on purpose, for tests of how the runner records a run's ending:
one that raises at a chosen step, one that pauses at every step (so a signal sent from outside
lands mid-run on any machine), one that takes long to build.

Used from the CLI: `task._target_=tests.faulty.FailingClassifier +task.fail_at=5`,
`task._target_=tests.faulty.SlowClassifier +task.pause_s=0.002`.

Also faults of the disk (`disk_fills`: writes failing as on a full disk), and `Child`: the
runner in a process of its own, started fast, for kills and signals at chosen moments.
"""

from __future__ import annotations

import contextlib
import errno
import multiprocessing
import multiprocessing.context
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tasks.classifier.task import Classifier

ROOT = Path(__file__).resolve().parent.parent


class FailingClassifier(Classifier):
    def __init__(self, *args, fail_at: int = 5, **kwargs):
        super().__init__(*args, **kwargs)
        self.fail_at, self.steps_done = fail_at, 0

    def train_step(self, opt, measure):
        self.steps_done += 1
        if self.steps_done == self.fail_at:
            raise RuntimeError(f"boom at step {self.fail_at}\nsecond line of the message")
        return super().train_step(opt, measure)


class SlowToBuild(Classifier):
    """Takes `build_s` seconds to build (a large dataset loading), saying so when it starts."""

    def __init__(self, *args, build_s: float = 60.0, **kwargs):
        print("building (tests.faulty.SlowToBuild)", file=sys.stderr, flush=True)
        time.sleep(build_s)
        super().__init__(*args, **kwargs)


class SlowClassifier(Classifier):
    def __init__(self, *args, pause_s: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.pause_s = pause_s

    def train_step(self, opt, measure):
        time.sleep(self.pause_s)
        return super().train_step(opt, measure)


# ---- faults of the disk: writes that fail as on a full or read-only disk -------------------------
@contextlib.contextmanager
def disk_fills(prefix: Path, after: int = 0, code: int = errno.ENOSPC) -> Iterator[None]:
    """os.write into files whose path starts with `prefix` fails with `code` (ENOSPC: a full disk)
    once `after` bytes have gone into them: the write that crosses the limit writes what fits and
    returns short, as a filling disk does, and the next one raises."""
    real, written = os.write, [0]

    def write(fd: int, data: bytes) -> int:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if not path.startswith(str(prefix)):
            return real(fd, data)
        room = after - written[0]
        if room <= 0:
            raise OSError(code, os.strerror(code))
        n = real(fd, bytes(data)[:room])
        written[0] += n
        return n

    os.write = write
    try:
        yield
    finally:
        os.write = real


# ---- `runner ARGS` in a process of its own, started in a fraction of a second --------------------
_server: multiprocessing.context.ForkServerContext | None = None
PRELOAD = ["runner.__main__", "runner.run.job", "tasks.classifier.task", "tasks.gan.task", "tasks.diffusion.task", "tests.faulty",
           "matplotlib.pyplot"]


def _main(args: list[str], env: dict[str, str], out: str, fill: tuple[str, int, int] | None) -> None:
    """In the child: output to `out`, `env` set, then the console script's own function."""
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.update(env)
    os.chdir(ROOT)
    sys.argv = ["runner", *args]
    import runner.__main__ as cli

    with disk_fills(Path(fill[0]), fill[1], fill[2]) if fill else contextlib.nullcontext():
        cli.main()


class Child:
    """`runner ARGS` in a real process of its own (so it can be killed and signalled), forked from a
    server that imported torch and the runner once (multiprocessing's forkserver): no import time.
    `env` is added to the child's environment (e.g. RUNNER_PAUSE_AT=<moment>, runner/resume/stops.py);
    `fill` = (path prefix, bytes, errno) makes its writes there fail (`disk_fills`)."""

    def __init__(self, args: list[str], out: Path, env: dict[str, str] | None = None,
                 fill: tuple[str, int, int] | None = None):
        global _server
        if _server is None:
            os.environ.setdefault("MPLBACKEND", "Agg")
            _server = multiprocessing.get_context("forkserver")
            _server.set_forkserver_preload(PRELOAD)
        self.out = out
        env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = _server.Process(target=_main, args=(list(args), env, str(out), fill), daemon=True)
        self.proc.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def wait_for(self, text: str, timeout: float = 120) -> None:
        """Until `text` is in the child's output (it paused at a moment); fails if it ended first."""
        deadline = time.time() + timeout
        while text not in self.output():
            if not self.proc.is_alive() or time.time() > deadline:
                raise AssertionError(f"{text!r} never came (exit {self.proc.exitcode}):\n{self.output()}")
            time.sleep(0.02)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def join(self, timeout: float = 120) -> int:
        self.proc.join(timeout)
        if self.proc.exitcode is None:
            self.proc.kill()
            raise AssertionError(f"still running after {timeout} s:\n{self.output()}")
        return self.proc.exitcode
