"""The `runner` command (and `python -m runner`): a Hydra app over `conf/`.

    runner                                   # default experiment (digits, offline, CPU)
    runner task=cifar optim=muon
    runner -m task=digits optim=sgd,adam,muon seed=0,1,2

Exit status: 0 when every run completed or diverged (a result), 1 when one failed or its
config was invalid, 130 on Ctrl-C (128 + the signal's number for SIGTERM/SIGUSR2). A multirun
ends with a table of every job (runner/sweep.py), also when a Ctrl-C stops it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from runner import extras, sweep

# The configs are the package runner.conf (pyproject.toml maps it onto conf/): the clone's conf/ in
# an editable install, site-packages/runner/conf in a wheel. find_spec locates it without importing.
_conf = importlib.util.find_spec("runner.conf")
if _conf is None:  # an editable install made before conf/ became runner.conf
    raise ModuleNotFoundError('runner.conf (the configs) is not installed: run pip install -e ".[dev]" again')
CONF_DIR = str(Path(_conf.origin).parent)
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
    # `experiment` is in the defaults list (so `experiment=NAME` works, as in lightning-hydra-template);
    # Hydra would refuse the `+experiment=NAME` that earlier versions of this README used.
    sys.argv = [a[1:] if a.startswith("+experiment=") else a for a in sys.argv]
    extras.require(sys.argv[1:])  # a choice whose plugin is an extra not installed: one line, not Hydra's
    try:
        app()
    except KeyboardInterrupt as e:
        _show_sweep_table()
        sys.exit(getattr(e, "exit_code", 130))
    except SystemExit:  # Hydra exits on an error it reports (one a job raised, in a sweep)
        _show_sweep_table()
        raise
    finally:
        sweep.active = None  # the multirun of this invocation is over
    # A multirun's verdict comes from its job folders (jobs may have run in other processes).
    sys.exit(sweep.exit_code if sweep.exit_code is not None else max(_exit_codes, default=0))


def _show_sweep_table() -> None:
    """A sweep stopped before its end (Ctrl-C, or an error that Hydra reports and exits on) still
    shows where its jobs stand."""
    if sweep.active is not None and sweep.exit_code is None:
        callback, config = sweep.active
        callback.on_multirun_end(config)


if __name__ == "__main__":
    main()
