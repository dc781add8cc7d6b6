"""The lanes launcher's .hydra/ files (hydra_plugins/runner_lanes/saved.py) are the text Hydra writes,
character for character, for every task's config and its hydra node, with pieces reused between jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from hydra_plugins.runner_lanes.saved import SavedYaml
from runner.__main__ import CONF_DIR

TASKS = sorted(p.stem for p in Path(CONF_DIR, "task").glob("*.yaml"))


@pytest.mark.parametrize("task", TASKS)
def test_the_text_is_omegaconfs_for_each_job(task):
    saved = SavedYaml()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for seed, lr in [(0, 0.1), (1, 0.1), (2, 1e-3)]:
            cfg = compose("config", overrides=[f"task={task}", f"seed={seed}", f"optim.lr={lr}",
                                               "hydra.job.num=3"], return_hydra_config=True)
            with open_dict(cfg):
                cfg.hydra.runtime.output_dir = f"/tmp/sweep/{seed}"
            hydra = OmegaConf.masked_copy(cfg, "hydra")
            job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
            for part in (job, hydra, cfg.hydra.overrides.task, OmegaConf.create({}), OmegaConf.create({"a": {}})):
                assert saved.text(part) == OmegaConf.to_yaml(part)
            assert saved.text(cfg, only="hydra") == OmegaConf.to_yaml(hydra)  # hydra.yaml from the whole config
            first = first if seed else len(saved.pieces)
    assert len(saved.pieces) < 1.5 * first  # most pieces were reused by the later jobs
