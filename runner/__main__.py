"""The `runner` command (and `python -m runner`): a Hydra app over `conf/`.

    runner                                   # default experiment (digits, offline, CPU)
    runner task=cifar optim=muon
    runner -m task=digits optim=sgd,adam,muon seed=0,1,2

Exit status: 0 when every run completed or diverged (a result), 1 when one failed or its
config was invalid, 130 on Ctrl-C (128 + the signal's number for SIGTERM/SIGUSR2). A multirun
ends with a table of every job (runner/sweep.py), also when a Ctrl-C stops it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from runner import sweep

# conf/ sits beside the package in a clone and in an editable install.
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
_exit_codes: list[int] = []


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def app(cfg: DictConfig) -> float:
    """One job. Returns the value a sweeper optimises (`objective` in the config; Optuna reads it)."""
    from hydra.core.hydra_config import HydraConfig

    from runner.run import run  # imported here so `runner --help` stays fast

    _exit_codes.append(run(cfg))
    hc = HydraConfig.get()
    minimize = hc.sweeper.get("direction", "minimize") != "maximize"
    return sweep.objective(Path(hc.runtime.output_dir), cfg.objective.metric, cfg.objective.use, minimize)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt as e:
        if sweep.active is not None:  # a stopped sweep still shows where its jobs stand
            callback, config = sweep.active
            callback.on_multirun_end(config)
        sys.exit(getattr(e, "exit_code", 130))
    # A multirun's verdict comes from its job folders (jobs may have run in other processes).
    sys.exit(sweep.exit_code if sweep.exit_code is not None else max(_exit_codes, default=0))


if __name__ == "__main__":
    main()
