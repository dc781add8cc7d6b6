"""wandb misbehaving never changes a run's outcome (issue 12, item 10 and "wandb without a network").

Through the real entry point (`python -m runner` in a subprocess):

- a Ctrl-C or SIGTERM while wandb finishes its run, a finish that hangs, one that raises, a log call
  that raises: the run ends `completed`, exit code 0, its table printed, with one line saying how
  to `wandb sync` later. The faults are injected by `FaultyWandb` below, the real tracker whose wandb
  run misbehaves (`logger._target_=tests.tracking.test_faults_wandb.FaultyWandb +logger.fault=...`).
- `logger.mode=online` with an API key and no server that answers (a closed port, or one that
  accepts connections and never answers): offline within seconds, saying so and how to sync;
  `logger.fallback=fail` exits 1 before any work; a sweep asks the server once per process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from runner.tracking import deadline, network
from runner.tracking.tracker import WandbTracker
from tests.helpers import ROOT, run_main

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
GAN = ("task=gan", "task.steps=20", "log_every=5")
FAULTY = "logger._target_=tests.tracking.test_faults_wandb.FaultyWandb"
FAKE_KEY = "0123456789abcdef" * 2 + "01234567"  # 40 hex characters: wandb accepts it without asking


class FaultyWandb(WandbTracker):
    """The real tracker, whose wandb run misbehaves: `fault=hang` (finishing sleeps `pause_s` where
    wandb waits for its service: a signal sent meanwhile lands there), `raise` (finishing raises
    there), `log` (logging raises from the second record on). Touches `<run_dir>/finishing` as
    its finish begins."""

    def __init__(self, *args, fault: str = "hang", pause_s: float = 600.0, **kwargs):
        super().__init__(*args, **kwargs)
        run = self.run
        # Inside run.finish(), after wandb has marked the run finished (a later wandb.init does not
        # finish it again): where wandb waits for its service to write or upload the run's end.
        real_on_finish, real_log, calls = run._on_finish, run.log, []

        def on_finish():
            (self.run_dir / "finishing").touch()
            if fault == "raise":
                raise RuntimeError("wandb-core went away (injected)")
            time.sleep(pause_s if fault == "hang" else 0)
            real_on_finish()

        def log(*a, **kw):
            calls.append(1)
            if fault == "log" and len(calls) > 1:
                raise BrokenPipeError("wandb-core went away (injected)")
            real_log(*a, **kw)

        run._on_finish, run.log = on_finish, log


def start(run_dir: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runner", *GAN, *args, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            env=env or ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def assert_completed_with_table(code: int, out: str, run_dir: Path) -> None:
    assert code == 0, out
    s = summary(run_dir)
    assert (s["status"], s["exit_code"], s["steps"]) == ("completed", 0, 20), s
    assert "┃ metric" in out and f"run folder: {run_dir}" in out, out  # the summary table, then the folder


@pytest.mark.parametrize("signum", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_a_stop_signal_while_wandb_finishes_leaves_the_completed_run_and_its_table(tmp_path, signum):
    """Before: a Ctrl-C there exited 130 without the table, summary.json saying `completed`."""
    proc = start(tmp_path, FAULTY, "+logger.fault=hang")
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "finishing").exists() and proc.poll() is None:
        time.sleep(0.05)
    sent = time.time()
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    assert time.time() - sent < 20, out  # the wait ends at the signal (the fault sleeps 600 s)
    assert_completed_with_table(proc.returncode, out, tmp_path)
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert f"wandb: {name} while it was finishing: stopped waiting for wandb" in out, out
    assert f"`wandb sync {tmp_path}/wandb/offline-run-" in out, out


@pytest.mark.parametrize("fault, line", [
    ("hang", "it did not finish within 1 s (logger.finish_timeout)"),
    ("raise", "finishing failed (RuntimeError: wandb-core went away (injected))"),
    ("log", "stopped logging to wandb at step 10 (BrokenPipeError: wandb-core went away (injected))"),
])
def test_wandb_hanging_or_raising_changes_nothing_in_the_run(tmp_path, capsys, monkeypatch, fault, line):
    """In this process (torch already imported): seconds faster than a subprocess."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    t0 = time.time()
    code, out = run_main(capsys, *GAN, FAULTY, f"+logger.fault={fault}", "logger.finish_timeout=1",
                         f"hydra.run.dir={tmp_path}")
    assert_completed_with_table(code, out, tmp_path)
    assert f"wandb: {line}" in out, out
    assert out.count("wandb sync") == 1 + (fault == "log"), out  # one line with the command (and the offline run's)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 4  # the local record is whole
    assert time.time() - t0 < 30, out  # 1 s of waiting, not the fault's 600 s


# ---- wandb without a network -------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when this returns: connections are refused


def online(url: str) -> dict:
    return {**ENV, "WANDB_MODE": "online", "WANDB_API_KEY": FAKE_KEY, "WANDB_BASE_URL": url}


def test_online_without_a_server_goes_offline_in_seconds_and_says_how_to_sync(tmp_path):
    """Before: wandb.init retried for 90 s, then the run failed."""
    proc = start(tmp_path, "logger.mode=online", env=online(f"http://127.0.0.1:{closed_port()}"))
    out, _ = proc.communicate(timeout=120)
    assert_completed_with_table(proc.returncode, out, tmp_path)
    assert summary(tmp_path)["wall_time_s"] < 15, out  # the check is instant on a refused connection
    assert out.count("does not answer ([Errno 111] Connection refused): logging offline instead") == 1, out
    assert f"upload later with `wandb sync {tmp_path}/wandb/offline-run-*`" in out, out
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1


def test_online_without_a_server_and_fallback_fail_exits_1_before_any_work(tmp_path):
    proc = start(tmp_path, "logger.mode=online", "logger.fallback=fail", env=online(f"http://127.0.0.1:{closed_port()}"))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    s = summary(tmp_path)
    assert s["status"] == "failed" and s["steps"] == 0 and not (tmp_path / "metrics.jsonl").exists()
    assert "does not answer ([Errno 111] Connection refused)" in s["error"] and "logger.fallback=fail" in s["error"]
    assert "nothing was run" in out, out


class Silent:
    """A server that accepts connections and never answers (a firewall that drops, a dead proxy);
    counts the connections."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port, self.held = self.sock.getsockname()[1], []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return


@pytest.mark.slow
def test_a_sweep_online_without_answers_checks_once_per_process_and_each_job_completes(tmp_path):
    server = Silent()
    proc = subprocess.run([sys.executable, "-m", "runner", "-m", "task=gan", "task.steps=5", "seed=0,1,2",
                           "logger.mode=online", "logger.check_timeout=1", f"hydra.sweep.dir={tmp_path}"],
                          cwd=ROOT, env=online(f"http://127.0.0.1:{server.port}"), text=True, capture_output=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert len(server.held) == 1, out  # one check for the three jobs
    assert out.count("does not answer (no answer within 1 s): logging offline instead") == 3, out
    for job in range(3):
        s = summary(tmp_path / str(job))
        assert s["status"] == "completed" and s["wall_time_s"] < 15, s
        assert len(list((tmp_path / str(job) / "wandb").glob("offline-run-*"))) == 1


@pytest.fixture
def http_server():
    """A local HTTP server answering HEAD with the status its path names (`/404`, none: 404) and
    every POST (wandb's API) with 500; records the requests."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self):
            seen.append(self.path)
            self.send_response(int(self.path.strip("/") or 404))
            self.end_headers()

        def do_POST(self):
            seen.append(f"POST {self.path}")
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_any_answer_counts_as_reachable_except_a_gateway_error_and_the_answer_is_kept(http_server, monkeypatch,
                                                                                     tmp_path):
    url, seen = http_server
    monkeypatch.setattr(network, "_problems", {})

    def mode(url: str, timeout: float = 2) -> tuple[str, str | None]:
        return network.online_or_offline(SimpleNamespace(base_url=url, http_proxy=None, https_proxy=None),
                                         "offline", timeout, tmp_path)

    assert mode(f"{url}/404") == ("online", None)  # wandb's API answers its root with 404
    assert mode(f"{url}/200") == ("online", None)
    assert mode(f"{url}/503")[1].startswith(f"wandb: {url}/503 does not answer (HTTP 503 from a proxy): logging offline")
    assert mode(f"{url}/404") == ("online", None)
    assert seen == ["/404", "/200", "/503"]  # asked once per URL and process
    t0 = time.time()
    assert "does not answer (no answer within 0.5 s)" in mode(f"http://127.0.0.1:{Silent().port}", 0.5)[1]
    assert time.time() - t0 < 2
    with pytest.raises(network.WandbUnreachable, match="does not answer .*logger.fallback=fail: nothing was run"):
        network.online_or_offline(SimpleNamespace(base_url=f"{url}/503", http_proxy=None, https_proxy=None),
                                  "fail", 2, tmp_path)


@pytest.mark.slow
def test_a_server_that_answers_but_where_wandb_cannot_start_online_gives_an_offline_run(tmp_path, http_server):
    url, seen = http_server
    proc = start(tmp_path, "logger.mode=online", env={**online(url), "WANDB_INIT_TIMEOUT": "3"})
    out, _ = proc.communicate(timeout=120)
    assert_completed_with_table(proc.returncode, out, tmp_path)
    assert "wandb: wandb.init failed online (" in out and "logging offline instead" in out, out
    assert seen[0] == "/" and any(r.startswith("POST") for r in seen)  # the check, then wandb's own tries
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 1


# ---- the bounded wait (runner/tracking/deadline.py) -------------------------------------------------------


def signal_soon(signum: int, after: float = 0.2) -> None:
    threading.Timer(after, os.kill, (os.getpid(), signum)).start()


def test_a_stop_signal_ends_the_wait_and_reaches_the_handler_found_before():
    seen = []

    def record(signum, frame):
        seen.append(signum)

    before = signal.signal(signal.SIGTERM, record)
    try:
        signal_soon(signal.SIGTERM)
        t0 = time.time()
        end = deadline.within(30, time.sleep, 30)
        assert (end.done, end.signum) == (False, signal.SIGTERM) and time.time() - t0 < 5
        assert seen == [signal.SIGTERM]  # the runner's own handler records it (a sweep stops there)
        assert signal.getsignal(signal.SIGTERM) is record  # put back
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_ctrl_c_with_python_default_handler_ends_the_wait_without_a_keyboard_interrupt():
    # Python's own handler, set here: a process started in the background by a shell inherits
    # SIGINT ignored, and Python then keeps it ignored (CI runners, `cmd &`).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        signal_soon(signal.SIGINT)
        end = deadline.within(30, time.sleep, 30)
        assert end.signum == signal.SIGINT
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
    assert deadline.within(5, lambda: None).done
    end = deadline.within(5, lambda: 1 / 0)
    assert isinstance(end.error, ZeroDivisionError) and not end.done
    assert not deadline.within(0.2, time.sleep, 5).done  # still running at the limit
