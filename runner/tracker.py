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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class NullTracker:
    id: str | None = None

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
                 mode: str, entity: str | None = None, group: str | None = None,
                 job_type: str = "train", run_id: str | None = None, **_: Any):
        import wandb

        self.run = wandb.init(
            project=project, entity=entity, mode=mode, group=group, job_type=job_type,
            id=run_id, resume="allow" if run_id else None,  # a resumed run continues its wandb run
            name=name, tags=list(tags), config=config, dir=str(run_dir),
            reinit="finish_previous",  # a sweep in one process never logs into the previous job's run
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=True, save_code=False),
        )
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")
        self.id, self.step = self.run.id, 0

    def log(self, record: Mapping[str, float]) -> None:
        # wandb's own step (`_step`) is the runner's: a resumed run's history continues from its
        # checkpoint instead of restarting at 0 in its new offline folder. Never backwards:
        # wandb drops a record logged at a smaller step than the last.
        self.step = max(int(record.get("step", self.step)), self.step)
        self.run.log(dict(record), step=self.step)

    def summarize(self, values: Mapping[str, Any]) -> None:
        self.run.summary.update(dict(values))

    def image(self, key: str, path: Path) -> None:
        import wandb

        self.run.log({key: wandb.Image(str(path))}, step=self.step)

    def update_config(self, values: Mapping[str, Any]) -> None:
        """Values known only once the task is built (`total_steps` and what reads it)."""
        self.run.config.update(dict(values), allow_val_change=True)

    def finish(self, exit_code: int, status: str = "completed") -> None:
        offline = self.run.settings.mode == "offline"
        folder = self.run.dir.rsplit("/files", 1)[0]
        if status == "interrupted":
            self.run.mark_preempting()  # preempted and resumable, not failed (module docstring)
        self.run.finish(exit_code=exit_code)
        if offline:
            parts = sorted(Path(folder).parent.glob(f"offline-run-*-{self.id}"))
            where = folder if len(parts) < 2 else f"{Path(folder).parent}/offline-run-*-{self.id}"
            print(f"wandb: offline run in {where}; upload with `wandb sync {where}`")
