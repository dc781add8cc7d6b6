"""Whether wandb's server answers, asked once per process before an online run.

Without a network, `wandb.init(mode="online")` retries for its `init_timeout` (90 s) and then
raises: every job of a sweep would lose a minute and a half, then fail. One HEAD request to the
server's URL, given at most a few seconds (name lookup included), tells beforehand. Any HTTP answer
counts as reachable (the API answers its root with 404 or a redirect), except a proxy's 502/503/504:
that proxy could not reach the server either. The answer is kept for the rest of the process, so the
jobs of a sweep pay for one check, not one each.

When it does not answer, or wandb.init fails online all the same, `logger.fallback` decides:
`offline` (the default: the run logs offline and says how to sync it later; the later runs of the
process go offline at once) or `fail` (the run stops before any work, exit code 1).
"""

from __future__ import annotations

import contextlib
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

GATEWAY_ERRORS = (502, 503, 504)  # a proxy answered for a server it could not reach
_problems: dict[str, str | None] = {}  # base URL: why an online run cannot be (None: it can), for this process


class WandbUnreachable(RuntimeError):
    """logger.mode=online, wandb cannot log online, and logger.fallback=fail."""


def start_run(wandb: Any, start: Callable[..., Any], mode: str, fallback: str, timeout: float, run_dir: Path,
              say: Callable[[str], None]) -> Any | None:
    """wandb's run from `start(mode=...)`: online if the server answers and wandb starts online,
    else (fallback=offline) offline, said in one line; None if wandb does not start even offline
    (said too). With fallback=fail, the error instead of either."""
    if mode == "online":
        mode, line = online_or_offline(wandb.setup().settings, fallback, timeout, run_dir)
        _say_offline(wandb, line, say)
    try:
        return start(mode=mode)
    except Exception as e:  # noqa: BLE001 - wandb fails the run only with fallback=fail
        if fallback == "fail":
            raise
        error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if mode == "online":  # the server answered, and still no online run
        url = wandb.setup().settings.base_url
        _say_offline(wandb, going_offline(url, f"wandb.init failed online ({error})", fallback, run_dir), say)
        with contextlib.suppress(Exception):
            return start(mode="offline")
    say(f"wandb: its run could not start ({error}): this run goes on without wandb (logger.fallback=offline), "
        f"its own records in {run_dir}")
    return None


def _say_offline(wandb: Any, line: str | None, say: Callable[[str], None]) -> None:
    """Say why this run logs offline. The process's wandb settings too: its own telemetry would
    otherwise post to the server at exit (a 10 s timeout where packets are dropped)."""
    if line is not None:
        wandb.setup(wandb.Settings(mode="offline"))
        say(line)


def online_or_offline(settings: Any, fallback: str, timeout: float, run_dir: Path) -> tuple[str, str | None]:
    """The mode an online run gets from wandb's `settings` (base_url, proxies), and the line that
    says why it is offline (None when online). With fallback=fail, an error instead of offline."""
    url = settings.base_url
    if url not in _problems:
        why = _ask(url, timeout, settings.https_proxy if url.startswith("https") else settings.http_proxy)
        _problems[url] = why and f"{url} does not answer ({why})"
    if _problems[url] is None:
        return "online", None
    return "offline", going_offline(url, _problems[url], fallback, run_dir)


def going_offline(url: str, problem: str, fallback: str, run_dir: Path) -> str:
    """The line saying that this run logs offline because of `problem`, kept for the rest of the
    process (its later runs go offline at once); with fallback=fail, the error instead."""
    _problems[url] = problem
    if fallback == "fail":
        raise WandbUnreachable(f"logger.mode=online: {problem}, and logger.fallback=fail: nothing was run. "
                               "Check the network (or WANDB_BASE_URL), or log offline and sync later: "
                               "logger.mode=offline or logger.fallback=offline")
    return (f"wandb: {problem}: logging offline instead (logger.fallback=offline); "
            f"upload later with `wandb sync {run_dir}/wandb/offline-run-*`")


def _ask(url: str, timeout: float, proxy: str | None) -> str | None:
    # In a thread: urlopen's timeout covers each socket operation, not the name lookup, which can
    # take longer than the whole budget on a machine whose DNS server cannot be reached.
    answer = [f"no answer within {timeout:g} s"]

    def head() -> None:
        handlers = [urllib.request.ProxyHandler({"http": proxy, "https": proxy})] if proxy else []
        try:
            urllib.request.build_opener(*handlers).open(urllib.request.Request(url, method="HEAD"),
                                                        timeout=timeout).close()
            answer[0] = None
        except urllib.error.HTTPError as e:  # the server (or a proxy) answered
            answer[0] = f"HTTP {e.code} from a proxy" if e.code in GATEWAY_ERRORS else None
        except urllib.error.URLError as e:
            if not isinstance(e.reason, TimeoutError):  # a timeout keeps its message, whichever side of the join it falls
                answer[0] = str(e.reason)
        except TimeoutError:  # the socket's own timeout, the same as the wait's: no answer within it
            pass
        except Exception as e:  # noqa: BLE001 - anything else that stops the request is the reason
            answer[0] = f"{type(e).__name__}: {e}"

    probe = threading.Thread(target=head, name="wandb-reachable", daemon=True)
    probe.start()
    probe.join(timeout)
    return answer[0]
