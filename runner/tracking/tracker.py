"""Where metrics go besides the run folder: wandb, or nowhere.

wandb is imported only when selected (it costs most of a second). One wandb run per runner run,
created as soon as the config is valid (a task that fails to build still has its failed run) and
finished in the runner's `finally` with the run's real exit code and status:

- failed: exit code 1, so wandb shows it failed; `status` and `error` are in its summary.
- interrupted (Ctrl-C, SIGTERM, SLURM's SIGUSR2): `run.mark_preempting()` before
  `finish(exit_code=130/143/140)`: the transaction log holds a `preempting` record, so the server
  shows the run as preempted (resumable) instead of failed, and wandb's sweep agents requeue it.
- resumed from its checkpoint: the same run id with `resume="allow"`. Each record is logged at
  its own step (`step=`), so the resumed part continues after the checkpoint's step and the
  history of the two offline folders of one id is one increasing sequence; `wandb sync` given
  both folders uploads them in order of start time into that one run.

The run's outcome never depends on wandb (its files in the run folder are the record):

- online without a server that answers (runner/tracking/network.py, one check per process):
  `logger.fallback=offline` logs offline and says how to sync later; `fail` stops before any work.
- wandb failing to start (fallback=offline) or raising while the run goes on: one line, and the
  run goes on without it.
- finishing gets `logger.finish_timeout` seconds (runner/tracking/deadline.py; wandb's own upload wait is
  given most of them): a Ctrl-C, SIGTERM, error or hang there ends the wait with a line saying how
  to `wandb sync` later. The summary already written stands, and so does the exit code; the
  signal is passed on to the runner's own handler (a sweep stops before its next job) and kept
  in `stopped_by`.

The run's requirements.txt (the installed packages, as wandb lists them) is listed once per
process and saved into each run (`requirements`): wandb would list them again for every run,
about 150 ms each, most of what a run costs it in a sweep of small jobs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from runner.tracking import deadline, network

log = logging.getLogger(__name__)
FALLBACKS = ("offline", "fail")
UPLOAD_SHARE = 0.8  # of finish_timeout, for wandb's own wait on its uploads: then it closes the run itself


class NullTracker:
    id: str | None = None
    stopped_by: int | None = None

    def __init__(self, **_: Any):
        pass

    def log(self, record: Mapping[str, float]) -> None:
        pass

    def summarize(self, values: Mapping[str, Any]) -> None:
        pass

    def image(self, key: str, path: Path) -> None:
        pass

    def update_config(self, values: Mapping[str, Any]) -> None:
        pass

    def finish(self, exit_code: int, status: str = "completed") -> None:
        pass


class WandbTracker:
    def __init__(self, run_dir: Path, config: dict, name: str, tags: Sequence[str], project: str,
                 mode: str, entity: str | None = None, group: str | None = None, job_type: str = "train",
                 run_id: str | None = None, fallback: str = "offline", check_timeout: float = 3.0,
                 finish_timeout: float | None = 60.0, alongside: bool = False, **_: Any):
        import wandb

        _check(fallback, check_timeout, finish_timeout)
        self.run_dir, self.finish_timeout, self.stopped_by = Path(run_dir), finish_timeout, None
        self.run, self.id, self.step, self.broken, self.folder = None, None, 0, None, None
        settings = dict(console="off", silent=True, x_disable_stats=True, save_code=False)
        own_requirements = "x_save_requirements" in wandb.Settings.model_fields
        if own_requirements:  # the list made once per process (`requirements`), not by wandb per run
            settings["x_save_requirements"] = False
        if finish_timeout and "finish_timeout" in wandb.Settings.model_fields:  # wandb >= 0.25
            settings["finish_timeout"] = UPLOAD_SHARE * finish_timeout
        start = functools.partial(
            wandb.init, project=project, entity=entity, group=group, job_type=job_type,
            id=run_id, resume="allow" if run_id else None,  # a resumed run continues its wandb run
            name=name, tags=list(tags), config=config, dir=str(run_dir),
            # a sweep in one process never logs into the previous job's run; the lanes of a group
            # (`alongside`) each keep their own run open at once
            reinit="create_new" if alongside else "finish_previous",
            settings=wandb.Settings(**settings))
        self.run = network.start_run(wandb, start, mode, fallback, check_timeout, self.run_dir, say)
        if self.run is None:
            self.broken = "it did not start"
            return
        self.id, self.folder = self.run.id, Path(self.run.dir).parent  # <run_dir>/wandb/<offline-run-...>
        self._call(lambda: (self.run.define_metric("step"), self.run.define_metric("*", step_metric="step")))
        if own_requirements:
            self._call(self._save_requirements)

    def _save_requirements(self) -> None:
        """requirements.txt in the run's files, saved as wandb saves its own (uploaded at the end)."""
        path = Path(self.run.dir) / "requirements.txt"
        path.write_text(requirements())
        self.run.save(str(path), base_path=self.run.dir, policy="end")

    def _call(self, call: Callable[[], Any]) -> None:
        """A call into wandb that may fail without failing the run: the first error ends the logging."""
        if self.broken is not None:
            return
        try:
            call()
        except Exception as e:  # noqa: BLE001 - a Ctrl-C still stops the run
            self.broken = _why(e)
            say(f"wandb: stopped logging to wandb at step {self.step} ({self.broken}); this run goes on, its own "
                f"records in {self.run_dir}; what wandb has: `wandb sync {self.folder}`")

    def log(self, record: Mapping[str, float]) -> None:
        # wandb's own step (`_step`) is the runner's: a resumed run's history continues from its
        # checkpoint instead of restarting at 0 in its new offline folder. Never backwards:
        # wandb drops a record logged at a smaller step than the last.
        self.step = max(int(record.get("step", self.step)), self.step)
        self._call(lambda: self.run.log(dict(record), step=self.step))

    def summarize(self, values: Mapping[str, Any]) -> None:
        self._call(lambda: self.run.summary.update(dict(values)))

    def image(self, key: str, path: Path) -> None:
        import wandb

        self._call(lambda: self.run.log({key: wandb.Image(str(path))}, step=self.step))

    def update_config(self, values: Mapping[str, Any]) -> None:
        """Values known only once the task is built (`total_steps` and what reads it)."""
        self._call(lambda: self.run.config.update(dict(values), allow_val_change=True))

    def finish(self, exit_code: int, status: str = "completed") -> None:
        """Close the wandb run; never raises, never waits past `finish_timeout` (module docstring)."""
        if self.run is None:  # never started: the run said so then
            return
        end = deadline.within(self.finish_timeout or None, self._close, exit_code, status)
        self.stopped_by, why = end.signum, self._trouble(end)
        if why is not None:
            say(f"wandb: {why}: stopped waiting for wandb. This run's own record is complete in {self.run_dir} "
                f"(summary.json: {status}); wandb's copy may lack its end: upload what it has with "
                f"`wandb sync {self.folder}`")
        elif self.run.settings.mode == "offline":
            parts = sorted(self.folder.parent.glob(f"offline-run-*-{self.id}"))
            where = self.folder if len(parts) < 2 else f"{self.folder.parent}/offline-run-*-{self.id}"
            print(f"wandb: offline run in {where}; upload with `wandb sync {where}`")

    def _trouble(self, end: deadline.Outcome) -> str | None:
        """What went wrong while finishing (None: nothing)."""
        if end.done:
            return None
        if end.signum is not None:
            return f"{deadline.signal_name(end.signum)} while it was finishing"
        if end.error is not None:
            return f"finishing failed ({_why(end.error)})"
        return f"it did not finish within {self.finish_timeout:g} s (logger.finish_timeout)"

    def _close(self, exit_code: int, status: str) -> None:
        if status == "interrupted":
            self.run.mark_preempting()  # preempted and resumable, not failed (module docstring)
        self.run.finish(exit_code=exit_code)


def import_before_torch(logger: Mapping[str, Any] | None) -> None:
    """Import what `wandb.init` will, if the logger node (`cfg.logger`) makes a WandbTracker; call
    it before torch is imported. wandb's first run imports its launch package, whose pydantic models
    each look up their source through inspect.getmodule, a scan of sys.modules per stack frame:
    after torch (some 3,000 more modules) that import took about 1.7 s, before it about 0.1 s."""
    target = logger.get("_target_") if isinstance(logger, Mapping) else None
    if target != f"{WandbTracker.__module__}.{WandbTracker.__qualname__}":
        return
    try:  # where wandb 0.2x-0.3x keep it; a wandb that fails to import fails its run later, as before
        import wandb.sdk.launch.inputs.internal  # noqa: F401
    except Exception:  # noqa: BLE001 - only the speed-up is lost
        pass


@functools.cache
def requirements() -> str:
    """The installed distributions, one `name==version` a line in the order wandb writes them
    (wandb.util.working_set): listed once per process, as a sweep's jobs share one environment."""
    from wandb.util import working_set

    return "".join(f"{d.key}=={d.version}\n" for d in working_set())


def _check(fallback: str, check_timeout: Any, finish_timeout: Any) -> None:
    if fallback not in FALLBACKS:
        raise ValueError(f"logger.fallback={fallback!r}: allowed: {', '.join(FALLBACKS)}")
    if isinstance(check_timeout, bool) or not (isinstance(check_timeout, (int, float)) and check_timeout > 0):
        raise ValueError(f"logger.check_timeout={check_timeout!r}: must be a number of seconds > 0")
    if finish_timeout is not None and (isinstance(finish_timeout, bool) or not (
            isinstance(finish_timeout, (int, float)) and finish_timeout > 0)):
        raise ValueError(f"logger.finish_timeout={finish_timeout!r}: must be a number of seconds > 0, or null")


def say(line: str) -> None:
    """To the terminal and to the run's runner.log."""
    print(line, flush=True)
    log.warning(line)


def _why(e: BaseException) -> str:
    first = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__
