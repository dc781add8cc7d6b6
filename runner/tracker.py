"""Where metrics go besides the run folder: wandb, or nowhere.

wandb is imported only when selected (it costs most of a second). One wandb run per runner run,
finished in the runner's `finally` with the run's real exit code, so a failed run shows as failed.
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

    def finish(self, exit_code: int) -> None:
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
        self.id = self.run.id

    def log(self, record: Mapping[str, float]) -> None:
        self.run.log(dict(record))

    def summarize(self, values: Mapping[str, Any]) -> None:
        self.run.summary.update(dict(values))

    def image(self, key: str, path: Path) -> None:
        import wandb

        self.run.log({key: wandb.Image(str(path))})

    def finish(self, exit_code: int) -> None:
        offline = self.run.settings.mode == "offline"
        folder = self.run.dir.rsplit("/files", 1)[0]
        self.run.finish(exit_code=exit_code)
        if offline:
            print(f"wandb: offline run in {folder}; upload with `wandb sync {folder}`")
