"""`hydra/launcher=lanes_slurm`: a lanes sweep on SLURM (README "Lanes"), one SLURM job per lane group.

The sweep's jobs are composed and grouped on the submitting machine as `hydra/launcher=lanes` groups
them (lanes_launcher.py). Each lane group is one task of a SLURM array job, submitted through submitit
with the keys of Hydra's submitit SLURM launcher (conf/hydra/launcher/lanes_slurm.yaml); a group of one,
and each job of a group that lanes refuse, is a SLURM job of its own that runs it as
`hydra/launcher=slurm` does. Inside its SLURM job a group runs as the lanes launcher runs it and writes
each job's folder. On SIGUSR2 (preemption, or `signal_delay_s` before the time limit) every lane saves
its checkpoint and ends `interrupted`; then submitit's handler calls `checkpoint` (the same group again)
and requeues the job, whose lanes resume from their checkpoints (a job that had finished is skipped).
Each SLURM job hands back its jobs' JobReturns, put in sweep order for Hydra's sweepers and callbacks.
"""

# No `from __future__ import annotations`: Hydra imports plugin modules outside sys.modules, where
# dataclass cannot read string annotations (LanesSlurmConf); Python 3.10+ reads these as written.
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import CompactHydraException
from omegaconf import OmegaConf, open_dict, read_write

from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, SlurmQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from hydra_plugins.runner_lanes.lanes_launcher import Job, LanesLauncher, point


@dataclass
class LanesSlurmConf(SlurmQueueConf):
    """Hydra's submitit SLURM keys (typed: `hydra.launcher.constraint=a100` is set, not added) and `max_lanes`."""

    _target_: str = "hydra_plugins.runner_lanes.slurm_launcher.LanesSlurmLauncher"
    max_lanes: int = 100


# a group below hydra/launcher, so that the schema is not a launcher users choose between
ConfigStore.instance().store(group="hydra/launcher/schema", name="lanes_slurm", node=LanesSlurmConf,
                             provider="runner")


class SubmissionError(CompactHydraException):
    """submitit could not hand the lane groups to SLURM (Hydra prints the message alone and exits 1)."""


class LanesSlurmLauncher(SlurmLauncher):
    def __init__(self, max_lanes: int = 100, **params: Any) -> None:
        super().__init__(**params)
        self.max_lanes = int(max_lanes)

    def _lanes(self) -> LanesLauncher:
        lanes = LanesLauncher(self.max_lanes)
        lanes.setup(hydra_context=self.hydra_context, task_function=self.task_function, config=self.config)
        return lanes

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from runner.run.outcome import console

        lanes = self._lanes()
        jobs, resolved = lanes.compose(job_overrides, range(initial_job_idx, initial_job_idx + len(job_overrides)))
        submitted: list[tuple[list[int], bool]] = []  # each SLURM job's jobs (positions), and whether alone
        for members, why in lanes.plan(jobs, resolved):
            if why is None:
                submitted.append((members, False))
                continue
            console.print(f"lanes_slurm: {len(members)} job{'s' * (len(members) > 1)} submitted one per SLURM job: "
                          f"{why}", highlight=False)
            submitted += [([m], True) for m in members]
        groups = sum(not alone for _, alone in submitted)
        console.print(f"lanes_slurm: {len(jobs)} jobs in {len(submitted)} SLURM job{'s' * (len(submitted) > 1)} "
                      f"({groups} lane group{'s' * (groups != 1)}, {len(submitted) - groups} alone)", highlight=False)
        state = Singleton.get_state()
        calls = [([list(job_overrides[m]) for m in members], [jobs[m].idx for m in members], alone, state)
                 for members, alone in submitted]
        slurm_jobs = self._submit(calls)
        returns: dict[int, JobReturn] = {}
        for (members, _), slurm_job in zip(submitted, slurm_jobs, strict=True):
            returns.update(zip(members, self._returns(slurm_job, [jobs[m] for m in members]), strict=True))
        return [returns[k] for k in range(len(jobs))]

    def __call__(self, overrides: list[list[str]], idxs: list[int], alone: bool,
                 singleton_state: dict) -> list[JobReturn]:
        """In the SLURM job (and again in each requeue of it): its jobs as one lane group, or one job alone."""
        import submitit

        Singleton.set_state(singleton_state)
        lanes = self._lanes()
        jobs, _ = lanes.compose(overrides, idxs)
        for job in jobs:  # as Hydra's submitit launcher numbers a job: by its SLURM job
            with read_write(job.config.hydra), open_dict(job.config.hydra.job):  # `point` made it read-only
                job.config.hydra.job.id = submitit.JobEnvironment().job_id
        returns = lanes.run_group(jobs, range(len(jobs)), alone)
        return [returns[k] for k in range(len(jobs))]

    def _executor(self) -> Any:
        import submitit

        params = dict(self.params)
        executor = submitit.AutoExecutor(folder=params.pop("submitit_folder"), cluster="slurm",
                                         slurm_max_num_timeout=params.pop("max_num_timeout"))
        shared = set(OmegaConf.structured(BaseQueueConf).keys())  # the executor's own names; the rest are SLURM's
        executor.update_parameters(**{k if k in shared else f"slurm_{k}": v for k, v in params.items()})
        return executor

    def _submit(self, calls: list[tuple]) -> list[Any]:
        """One SLURM array job, a task per call; a SubmissionError that says why when SLURM refuses it."""
        from submitit.core.utils import FailedJobError, FailedSubmissionError

        n = f"{len(calls)} SLURM job{'s' * (len(calls) > 1)}"
        if shutil.which("srun") is None:  # submitit's test for a SLURM cluster
            raise SubmissionError(f"hydra/launcher=lanes_slurm: cannot submit the {n}: no SLURM here (`srun` is not "
                                  "on PATH); run the sweep where SLURM's commands are, or choose "
                                  "hydra/launcher=lanes to run it on this machine")
        executor = self._executor()
        try:
            return executor.map_array(self, *zip(*calls))
        except (FailedJobError, FailedSubmissionError, OSError) as e:  # sbatch refused, or answered no job id
            said = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            keys = ", ".join(f"hydra.launcher.{k}={self.params.get(k)}"
                             for k in ("partition", "account", "qos", "gpus_per_node", "timeout_min"))
            raise SubmissionError(f"hydra/launcher=lanes_slurm: sbatch did not take the {n}: {said} "
                                  f"(settings: {keys})") from None

    def _returns(self, slurm_job: Any, jobs: list[Job]) -> list[JobReturn]:
        """The SLURM job's JobReturns; for a SLURM job that ended without them (killed, out of requeues),
        one per job with the value its folder gives, and a line saying so: the sweep's table shows what
        each job left, and the sweep goes on."""
        from submitit.core.utils import FailedJobError, UncompletedJobError

        from runner.run.outcome import console

        try:
            return slurm_job.results()[0]
        except (FailedJobError, UncompletedJobError) as e:
            lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
            # a job that raised: its traceback's last line; one that left nothing: submitit's first two
            said = lines[-1] if isinstance(e, FailedJobError) else " ".join(lines[:2])
            console.print(f"lanes_slurm: SLURM job {slurm_job.job_id} (jobs {', '.join(str(j.idx) for j in jobs)}) "
                          f"ended without its results: {said}; its log: {slurm_job.paths.stderr}", highlight=False)
            return [lost(job) for job in jobs]


def lost(job: Job) -> JobReturn:
    """The JobReturn of a job whose SLURM job never returned: its folder's value for a sweeper."""
    import runner.sweep.summary as sweep

    point(job.config)
    hc, cfg = job.config.hydra, job.task_cfg
    folder = Path(str(hc.sweep.dir)) / str(hc.sweep.subdir)
    minimize = hc.sweeper.get("direction", "minimize") != "maximize"
    ret = JobReturn(overrides=list(job.overrides), cfg=cfg, status=JobStatus.COMPLETED)
    ret.return_value = sweep.objective(folder, cfg.objective.metric, cfg.objective.use, minimize)  # none: the worst
    return ret
