"""Waiting for work that may hang, with a limit that a stop signal also ends.

The work runs in a daemon thread (it never holds the process's exit); the calling thread waits at
most `seconds`. In the main thread a Ctrl-C, SIGTERM or SIGUSR2 ends the wait at once, whatever
handlers the run had (they are put back afterwards, and told of the signal): the work is left to
itself.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

STOP_SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGUSR2", None)) if s is not None)


@dataclass
class Outcome:
    """How a wait ended: `done` (the work returned), else `signum` (a stop signal), `error` (what
    the work raised) or neither (still running at the limit)."""

    done: bool = False
    signum: int | None = None
    error: BaseException | None = None


def within(seconds: float | None, work: Callable[..., Any], *args: Any) -> Outcome:
    """`work(*args)`, waited for at most `seconds` (None: as long as it takes)."""
    outcome = Outcome()

    def target() -> None:
        try:
            work(*args)
            outcome.done = True
        except BaseException as e:  # noqa: BLE001 - reported to the waiting thread
            outcome.error = e

    worker = threading.Thread(target=target, name=f"deadline-{getattr(work, '__name__', 'work')}", daemon=True)
    try:
        with _signals_raise():
            worker.start()
            worker.join(seconds)
    except _Stop as e:
        outcome.signum = e.signum
    return outcome


def signal_name(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


class _Stop(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextmanager
def _signals_raise() -> Iterator[None]:
    """While active, a stop signal raises _Stop in the main thread. Afterwards the signal is passed
    on to the handler found before when that is a Python function (the runner's own, which records
    it: a sweep then stops before its next job), except Python's default for Ctrl-C, which would
    raise the KeyboardInterrupt this wait exists to contain. What that handler raises is dropped:
    the run's ending is decided by then."""
    got: list[int] = []

    def handle(signum: int, frame: Any) -> None:
        got.append(signum)
        raise _Stop(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():  # elsewhere signals cannot be handled
        previous = {s: signal.signal(s, handle) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)  # None: not set from Python
        before = previous.get(got[0]) if got else None
        if callable(before) and before is not signal.default_int_handler:
            with suppress(BaseException):
                before(got[0], None)
