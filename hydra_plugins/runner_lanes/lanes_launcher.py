"""`hydra/launcher=lanes`: a sweep's jobs that differ only in lane-safe keys run as lanes of one
batched computation (runner/lanes/, README "Lanes"), every other job as Hydra's basic launcher runs it.

A Hydra Launcher plugin (Hydra finds launchers in the `hydra_plugins` namespace). Every job is
composed as the basic launcher composes it and gets what `hydra.core.utils.run_job` gives a job:
its folder, `.hydra/` (config.yaml, hydra.yaml, overrides.yaml), runner.log, HydraConfig set to its
own config whenever its lane is started or ended, the callbacks' on_job_start and on_job_end (the
end-of-sweep table) and a JobReturn. A group of one, or a task or setting that lanes do not support,
runs through the ordinary per-job path, with one line saying why.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import (JobReturn, JobRuntime, JobStatus, _flush_loggers, configure_log,
                              env_override, run_job, setup_globals)
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from hydra_plugins.runner_lanes.saved import SavedYaml
from runner.common.copies import duplicate

log = logging.getLogger(__name__)


def without_hydra(cfg: DictConfig) -> DictConfig:
    """The job's config without `hydra`, as run_job makes it (a deep copy, then `hydra` deleted),
    the hydra node left out of the copy rather than copied and dropped (it is most of the config)."""
    hydra = cfg._get_node("hydra")
    task_cfg = copy.deepcopy(cfg, {id(hydra): hydra})  # the memo hands back the node itself, uncopied
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    return task_cfg


def point(cfg: DictConfig) -> None:
    """HydraConfig.get() on this job's `hydra` node, read-only as set_config makes it, without
    set_config's copy of the node (most of a small lane's start and end): the job's config is not
    changed once it has begun, and `${hydra:...}` and the node's own interpolations into the job's
    config resolve as against set_config's copy, whose parent is the job's config."""
    OmegaConf.set_readonly(cfg.hydra, True)
    HydraConfig.instance().cfg = cfg


class Job:
    """One job of the sweep, held open between its start (`begin`) and its end (`end`) as run_job
    would hold it around the task function."""

    def __init__(self, launcher: LanesLauncher, overrides: Sequence[str], idx: int, composer: Composer):
        self.launcher, self.idx, self.overrides = launcher, idx, list(overrides)
        self.config = composer.compose(self.overrides)
        cfg = self.config
        with open_dict(cfg):
            cfg.hydra.job.id = cfg.hydra.job.num = idx
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):  # as run_job sets it, before any resolution
            cfg.hydra.runtime.output_dir = os.path.abspath(os.path.join(
                str(OmegaConf.select(cfg, "hydra.sweep.dir")), str(OmegaConf.select(cfg, "hydra.sweep.subdir"))))
        self.ret: JobReturn | None = None
        self.task_cfg = without_hydra(self.config)  # what run_job hands the task function
        self.log_cfg: DictConfig | None = None  # its job_logging resolved, made once (`_log_here`)
        self.resolved: dict | None = None  # its config resolved, as its lane starts with it (`LanesLauncher.compose`)

    @contextlib.contextmanager
    def enter(self) -> Iterator[None]:
        """This job's HydraConfig, logging and environment, as run_job sets them for its task."""
        saved = HydraConfig.instance().cfg
        point(self.config)
        try:
            self._log_here()
            with env_override(self.config.hydra.job.env_set):
                yield
        finally:
            HydraConfig.instance().cfg = saved

    def opened(self) -> contextlib.AbstractContextManager:
        """`enter`, the job begun at the first (its .hydra/ files and on_job_start just before its
        lane starts, under one set-up of its logging)."""
        if self.ret is None:
            self.begin()
        return self.enter()

    def _log_here(self) -> None:
        """Logging to this job's runner.log (Hydra's configure_log), unless it is already set up for
        it: on its job_logging resolved once, as resolving its interpolations is most of a call."""
        if self.launcher.logging_for is self:
            return
        logging_cfg = self.config.hydra.job_logging
        if self.log_cfg is None and logging_cfg is not None:
            self.log_cfg = OmegaConf.create(OmegaConf.to_container(logging_cfg, resolve=True))
        configure_log(self.log_cfg, self.config.hydra.verbose)
        self.launcher.logging_for = self

    def begin(self) -> None:
        cfg = self.config
        point(cfg)
        output_dir = cfg.hydra.runtime.output_dir
        self.ret = ret = JobReturn()
        ret.cfg, ret.hydra_cfg = self.task_cfg, cfg  # `hydra_cfg.hydra` as run_job's (`point`)
        ret.overrides = OmegaConf.to_container(cfg.hydra.overrides.task)
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        ret.working_dir = os.getcwd()  # hydra.job.chdir=true jobs never reach here (`lane_capable`)
        with self.enter():
            if cfg.hydra.output_subdir is not None:
                out = Path(cfg.hydra.runtime.output_dir) / str(cfg.hydra.output_subdir)
                files = self.launcher.saved
                files.save(self.task_cfg, "config.yaml", out)
                files.save(cfg, "hydra.yaml", out, only="hydra")
                files.save(cfg.hydra.overrides.task, "overrides.yaml", out)
            self.launcher.hydra_context.callbacks.on_job_start(config=cfg, task_function=self.launcher.task_function)

    def run_alone(self) -> None:
        """The job through the app's own function, as run_job calls it."""
        with self.enter():
            try:
                self.ret.return_value, self.ret.status = self.launcher.task_function(self.task_cfg), JobStatus.COMPLETED
            except Exception as e:  # noqa: BLE001 - as run_job: the job's failure is its JobReturn
                self.ret.return_value, self.ret.status = e, JobStatus.FAILED

    def end(self, code: int | None = None) -> JobReturn:
        with self.enter():
            if code is not None:  # a lane: the value a sweeper optimises, as the app returns it
                import runner.sweep.summary as sweep

                cfg, hc = self.task_cfg, self.config.hydra
                minimize = hc.sweeper.get("direction", "minimize") != "maximize"
                self.ret.return_value = sweep.objective(Path(hc.runtime.output_dir), cfg.objective.metric,
                                                        cfg.objective.use, minimize)
                self.ret.status = JobStatus.COMPLETED
            self.ret.task_name = JobRuntime.instance().get("name")
            _flush_loggers()
            self.launcher.hydra_context.callbacks.on_job_end(config=self.config, job_return=self.ret)
        return self.ret


class Composer:
    """Each job's config as Hydra's `load_sweep_config` composes it, composing once per set of
    config-group choices: Hydra's composition (the defaults tree, every file merged) is most of a
    small job's cost. A job whose overrides differ from a composed job's only in plain values
    (`key=value` with a number, string or list: no config group, no `+`, `++` or `~`, no dict,
    which Hydra merges rather than sets) is a copy of that config with those values set as Hydra
    sets them (`_apply_overrides_to_config`), and its recorded overrides and override_dirname made
    as Hydra makes them. tests/lanes/test_lanes.py checks each job's .hydra/ files against the
    basic launcher's."""

    def __init__(self, loader: Any, master: DictConfig):
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.loader, self.master, self.parser = loader, master, OverridesParser.create()
        self.composed: dict[tuple, tuple[list, DictConfig]] = {}

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        parsed = self.parser.parse_overrides(list(overrides))
        shape = tuple((o.key_or_group, o.package, o.input_line if not self._plain(o) else None) for o in parsed)
        if shape not in self.composed:
            cfg = self.loader.load_sweep_config(self.master, list(overrides))
            self.composed[shape] = (parsed, cfg)
            return cfg
        template_parsed, template = self.composed[shape]
        changed = [o for o, t in zip(parsed, template_parsed) if o.input_line != t.input_line]
        if any(o.key_or_group in template.hydra.runtime.choices for o in changed):  # another option of a group
            return self.loader.load_sweep_config(self.master, list(overrides))
        return self._derived(template, changed, parsed)

    @staticmethod
    def _plain(o: Any) -> bool:
        return not (o.is_add() or o.is_delete() or o.is_force_add() or o.is_hydra_override() or o.package is not None
                    or o.is_sweep_override() or isinstance(o.value(), dict))

    def _derived(self, template: DictConfig, changed: list, parsed: list) -> DictConfig:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname

        cfg = duplicate(template)
        ConfigLoaderImpl._apply_overrides_to_config(changed, cfg)
        app = [o for o in parsed if not o.is_hydra_override()]
        job = cfg.hydra.job.config.override_dirname
        cfg.hydra.overrides.task = [o.input_line for o in app]
        cfg.hydra.job.override_dirname = get_overrides_dirname(overrides=app, kv_sep=job.kv_sep,
                                                               item_sep=job.item_sep, exclude_keys=job.exclude_keys)
        OmegaConf.copy_cache(from_config=self.master, to_config=cfg)
        return cfg


class LanesLauncher(Launcher):
    def __init__(self, max_lanes: int = 100) -> None:
        super().__init__()
        self.max_lanes = int(max_lanes)
        self.config: DictConfig | None = None
        self.hydra_context: Any = None
        self.task_function: Any = None
        self.logging_for: Job | None = None  # the job whose runner.log logging goes to now (Job._log_here)
        self.saved = SavedYaml()  # the .hydra/ files' text, pieces shared by the jobs

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from runner.run.outcome import console

        jobs, resolved = self.compose(job_overrides, range(initial_job_idx, initial_job_idx + len(job_overrides)))
        returns: dict[int, JobReturn] = {}
        for members, why in self.plan(jobs, resolved):
            if why is not None:
                console.print(f"lanes: {len(members)} job{'s' * (len(members) > 1)} run one by one: {why}", highlight=False)
            returns.update(self.run_group(jobs, members, alone=why is not None))
        return [returns[k] for k in range(len(jobs))]

    def compose(self, job_overrides: Sequence[Sequence[str]], idxs: Sequence[int]) -> tuple[list[Job], list[dict]]:
        """Each job (job number `idxs[k]`) composed, and its resolved config (what groups are made of)."""
        from runner.run.identity import resolved_config

        setup_globals()
        self._log_sweep()
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        composer = Composer(self.hydra_context.config_loader, self.config)
        jobs = [Job(self, o, idx, composer) for o, idx in zip(job_overrides, idxs, strict=True)]
        for job in jobs:
            point(job.config)
            job.resolved = resolved_config(job.task_cfg)
        return jobs, [job.resolved for job in jobs]

    def plan(self, jobs: Sequence[Job], resolved: Sequence[dict]) -> list[tuple[list[int], str | None]]:
        """The lane groups (positions in `jobs`), each with why its jobs run one by one (None: as lanes)."""
        from runner.lanes import group

        planned = []
        for members in group.groups(resolved, self.max_lanes):
            first = jobs[members[0]]
            why = "a group of one" if len(members) == 1 else (
                "hydra.job.chdir=true" if first.config.hydra.job.chdir else group.refusal(first.config, resolved[members[0]]))
            planned.append((members, why))
        return planned

    def run_group(self, jobs: Sequence[Job], members: Sequence[int], alone: bool) -> dict[int, JobReturn]:
        """The jobs `members` (positions in `jobs`) as one lane group, or one by one (`alone`)."""
        from runner.lanes import group_run

        if alone:
            return {m: self._alone(jobs[m]) for m in members}
        returns = {}

        def ended(k: int, code: int) -> None:
            returns[members[k]] = jobs[members[k]].end(code)

        codes = group_run.run([jobs[m].task_cfg for m in members], lambda k: jobs[members[k]].opened(), ended,
                              [jobs[m].resolved for m in members])
        for m, code in zip(members, codes):
            if m in returns:
                continue
            if code is None:
                jobs[m].run_alone()
            returns[m] = jobs[m].end(code)
        self._log_sweep()
        return returns

    def _alone(self, job: Job) -> JobReturn:
        ret = run_job(hydra_context=self.hydra_context, task_function=self.task_function, config=job.config,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        self._log_sweep()
        return ret

    def _log_sweep(self) -> None:
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        self.logging_for = None
