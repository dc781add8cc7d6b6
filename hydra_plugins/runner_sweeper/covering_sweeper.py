"""Hydra's basic sweeper, with a cheaper check of the sweep before launch (a Hydra plugin: Hydra
instantiates sweepers only from the `hydra_plugins` namespace; selected in conf/config.yaml).

Before launching, Hydra's basic sweeper composes every job's config once to catch a bad override
early, and the launcher composes it again to run it: two compositions per job, most of the
runner's cost per job in a sweep of short runs. Here the check composes only the jobs needed to
try every config-group choice (`optim=adam`, `+optim@optim_discriminator=sgd`) and every other
key once: in an untyped config a plain value (`seed=7`, `optim.lr=0.1`) can only fail through
its key, while a group choice can name a missing file. The runner's own validation then checks
each job's values before it does any work. It also tells the sweep's progress lines how many
jobs there are (runner/sweep.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

from runner import sweep


class CoveringSweeper(BasicSweeper):
    def get_job_batch(self) -> Sequence[Sequence[str]]:
        sweep.expect(sum(len(batch) for batch in self.overrides))  # every batch is known before the first
        return super().get_job_batch()

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        repository = self.hydra_context.config_loader.repository
        super().validate_batch_is_legal(covering(batch, lambda group: repository.group_exists(group)))


def covering(batch: Sequence[Sequence[str]], is_group) -> list[Sequence[str]]:
    """The jobs of `batch`, in order, that first use a group choice or a key: together they use
    every group choice and every key of the batch."""
    seen: set[str] = set()
    chosen = []
    for job in batch:
        items = {_item(o, is_group) for o in job}
        if items - seen:
            chosen.append(job)
            seen |= items
    return chosen


def _item(override: str, is_group) -> str:
    key = override.split("=", 1)[0]
    group = key.lstrip("+~").split("@", 1)[0]
    return override if is_group(group) else key
