"""Hydra's basic sweeper, with a check of every job before the first is launched (a Hydra plugin:
Hydra instantiates sweepers only from the `hydra_plugins` namespace; selected in conf/config.yaml).

Hydra's basic sweeper composes every job's config once to catch a bad override early, and the
launcher composes it again to run it: two compositions per job, most of the runner's cost per
job in a sweep of short runs. Here the check composes each distinct set of config-group choices
once (`optim=adam`, `+optim@optim_discriminator=sgd`) and applies each job's plain overrides
(`seed=7`, `optim.lr=0.1`) to a copy, as Hydra's composition does after the defaults list. Every
job's config is then validated (runner/validation/validate.py: values, keys against their classes, the
task's checks; CUDA is left to the job, which may run elsewhere), all before the first job
starts: a mistake in job 40 of 50 stops the sweep before job 0 (about 10 ms a job on this 2-core
machine, against 100-200 ms for a composition; torch is imported once, for the second pass). A
parameter that sweeps no value (`seed=range(0,0)`) is an error naming it, not a sweep of no jobs
that exits 0. It also tells the sweep's progress lines how many jobs there are (runner/sweep/summary.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf, open_dict

import runner.sweep.summary as sweep
from runner.common.copies import duplicate


class CoveringSweeper(BasicSweeper):
    @staticmethod
    def split_arguments(overrides: list[Override], max_batch_size: int | None) -> list[list[list[str]]]:
        empty = [o for o in overrides if o.is_sweep_override() and o.is_discrete_sweep()
                 and next(iter(o.sweep_string_iterator()), None) is None]
        if empty:
            raise ConfigCompositionException(
                "a swept parameter has no values, so the sweep would run no job (nothing was run): "
                + "; ".join(f"{o.input_line} gives {o.get_key_element()} no value" for o in empty)
                + " (range(a,b) stops before b: seed=range(0,3) is 0, 1, 2)")
        return BasicSweeper.split_arguments(overrides, max_batch_size)

    def sweep(self, arguments: list[str]) -> Any:
        """Check every job, then sweep as Hydra's basic sweeper does (which makes the sweep folder)."""
        loader = self.hydra_context.config_loader
        overrides = OverridesParser.create(config_loader=loader).parse_overrides([*self._parse_config(), *arguments])
        jobs = [job for batch in self.split_arguments(overrides, None) for job in batch]
        found, unchecked = job_problems(jobs, self.config, loader)
        if found:
            raise ConfigCompositionException(report(found, len(jobs)))
        from runner.validation.validate import sweep_checked

        sweep_checked(job for num, job in enumerate(jobs) if num not in unchecked)  # while this sweep runs
        try:
            return super().sweep(arguments)
        finally:
            sweep_checked([])

    def get_job_batch(self) -> Sequence[Sequence[str]]:
        sweep.expect(sum(len(batch) for batch in self.overrides))  # every batch is known before the first
        return super().get_job_batch()

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Nothing more to check: `sweep` checked every job of every batch before the first."""


def job_problems(jobs: Sequence[Sequence[str]], master: Any, loader: Any) -> tuple[dict[str, list[int]], set[int]]:
    """{problem: the numbers of the jobs that have it}, over every job's composed config, and the
    numbers of the jobs whose check raised (each job checks itself again as it starts)."""
    from runner.tracking.tracker import import_before_torch
    from runner.validation.classes import deep_problems
    from runner.validation.validate import problems

    is_group = loader.repository.group_exists
    parser = OverridesParser.create(config_loader=loader)
    composed = {groups(job, is_group): None for job in covering(jobs, is_group)}
    for key in composed:  # a group choice may name a missing file: Hydra's own error
        composed[key] = loader.load_sweep_config(master, list(key))
    light = {key: _without_most_of_hydra(cfg) for key, cfg in composed.items()}
    found: dict[str, list[int]] = {}
    unchecked = set()
    for num, job in enumerate(jobs):
        key = groups(job, is_group)
        touches_hydra = any(o.lstrip("+~").startswith("hydra.") for o in job)
        cfg = duplicate((composed if touches_hydra else light)[key])  # most of the time is this copy
        ConfigLoaderImpl._apply_overrides_to_config(parser.parse_overrides([o for o in job if o not in key]), cfg)
        choices = cfg.hydra.runtime.choices
        try:
            listed = problems(cfg, choices)
            if not listed:
                import_before_torch(cfg.logger)
                listed = deep_problems(cfg, choices, devices=False)
        except Exception:  # noqa: BLE001 - a check that raised: the job itself reports it
            listed = []
            unchecked.add(num)
        for p in listed:
            found.setdefault(p, []).append(num)
    return found, unchecked


def _without_most_of_hydra(cfg: Any) -> Any:
    """The job's config with only the parts of `hydra` the validator reads (a third of the copy)."""
    light = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    with open_dict(light):
        light.hydra = {"runtime": {k: cfg.hydra.runtime[k] for k in ("choices", "config_sources")},
                       **{k: cfg.hydra[k] for k in ("launcher", "sweeper")}}
    return light


def covering(batch: Sequence[Sequence[str]], is_group) -> list[Sequence[str]]:
    """The first job of each distinct set of config-group choices in `batch`: composing these
    gives every job's defaults, its plain overrides go on top."""
    first: dict[tuple[str, ...], Sequence[str]] = {}
    for job in batch:
        first.setdefault(groups(job, is_group), job)
    return list(first.values())


def groups(job: Sequence[str], is_group) -> tuple[str, ...]:
    """The job's overrides that choose a config group (`optim=adam`, `+optim@optim_discriminator=sgd`)."""
    return tuple(o for o in job if is_group(o.split("=", 1)[0].lstrip("+~").split("@", 1)[0]))


def report(found: dict[str, list[int]], total: int) -> str:
    lines = [f"  - {p} ({_which(nums, total)})" for p, nums in found.items()]
    bad = len({n for nums in found.values() for n in nums})
    return f"invalid config in {bad} of {total} jobs (no job was run):\n" + "\n".join(lines)


def _which(nums: list[int], total: int) -> str:
    if len(nums) == total:
        return "every job" if total > 1 else "the job"
    shown = ", ".join(map(str, nums[:8])) + (f", ... ({len(nums)} jobs)" if len(nums) > 8 else "")
    return f"job {shown}" if len(nums) == 1 else f"jobs {shown}"
