"""The `runner` command (and `python -m runner`): a Hydra app over `conf/`.

    runner                                   # default experiment (digits, offline, CPU)
    runner task=cifar optim=muon
    runner -m task=digits optim=sgd,adam,muon seed=0,1,2

Exit status: 0 when every run completed or diverged (a result), 1 when one failed or its
config was invalid, 130 on Ctrl-C (128 + the signal's number for SIGTERM/SIGUSR2). A multirun
ends with a table of every job (runner/sweep/summary.py), also when a Ctrl-C stops it.
"""

from __future__ import annotations

import atexit
import gc
import importlib.util
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import runner.sweep.summary as sweep
from runner.resume import stops
from runner.validation import extras
from runner.validation.sources import dirs_in_argv, syntax_errors

# The configs are the package runner.conf (pyproject.toml maps it onto conf/): the clone's conf/ in
# an editable install, site-packages/runner/conf in a wheel. find_spec locates it without importing.
_conf = importlib.util.find_spec("runner.conf")
if _conf is None:  # an editable install made before conf/ became runner.conf
    raise ModuleNotFoundError('runner.conf (the configs) is not installed: run pip install -e ".[dev]" again')
CONF_DIR = str(Path(_conf.origin).parent)
_exit_codes: list[int] = []


def _collect_once_at_exit() -> None:
    """Collect what is garbage now (its finalizers run as they would at exit), then freeze the
    rest: the interpreter's own collections while it tears down torch's, sympy's and wandb's
    modules took 0.5-1.4 s of every exit. What is left is freed by reference counting as
    before. Registered at import, so it runs after the handlers registered later (wandb's
    teardown) and before the earlier ones (logging's flush and close)."""
    gc.collect()
    gc.freeze()


atexit.register(_collect_once_at_exit)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def app(cfg: DictConfig) -> float:
    """One job. Returns the value a sweeper optimises (`objective` in the config; Optuna reads it)."""
    from hydra.core.hydra_config import HydraConfig

    stops.arm()  # a stop signal from here on (importing torch, between jobs) ends in a summary
    hc = HydraConfig.get()
    if refused(cfg, hc):
        _exit_codes.append(1)
    else:
        from runner.run.job import run  # imported here: `runner --help` and a refused config stay fast

        _exit_codes.append(run(cfg))
    minimize = hc.sweeper.get("direction", "minimize") != "maximize"
    return sweep.objective(Path(hc.runtime.output_dir), cfg.objective.metric, cfg.objective.use, minimize)


def refused(cfg: DictConfig, hc: DictConfig) -> bool:
    """Validate the job's config before anything is built or written (the run folder keeps only
    Hydra's own files): its values without torch (a mistake is refused in about the time Hydra
    takes to compose), then, if they pass, what needs the classes (torch and the task imported)."""
    from omegaconf import OmegaConf

    from runner.validation import validate
    from runner.validation.rules import RuleError

    try:
        found = [] if validate.checked_by_sweep(hc.overrides.task) else validate.problems(
            cfg, hc.runtime.choices, OmegaConf.to_container(hc.runtime.config_sources))
    except RuleError as e:  # a `{...}` comment in a config file that is not a rule: the file's author's to fix
        found = [str(e)]
    later = "  (then each key is checked against its class, and the task's own checks run)"
    if not found:
        later = ""
        try:
            from runner.tracking.tracker import import_before_torch
            from runner.validation.classes import deep_problems  # imports torch and the task

            import_before_torch(cfg.logger)

            found = deep_problems(cfg, hc.runtime.choices)
        except Exception:  # noqa: BLE001 - a check that raised: the run reports it as a failed run
            found = []
    if found:
        text = "invalid config (nothing was run):\n" + "\n".join(f"  - {p}" for p in found)
        print(text + (f"\n{later}" if later else ""), flush=True)
        logging.getLogger("runner").error(text)
    return bool(found)


def main() -> None:
    # `experiment` is in the defaults list (so `experiment=NAME` works, as in lightning-hydra-template);
    # Hydra would refuse the `+experiment=NAME` that earlier versions of this README used.
    sys.argv = [a[1:] if a.startswith("+experiment=") else a for a in sys.argv]
    extras.require(sys.argv[1:])  # a choice whose plugin is an extra not installed: one line, not Hydra's
    if errors := syntax_errors([Path(CONF_DIR), *dirs_in_argv(sys.argv[1:])]):  # not PyYAML's traceback
        raise SystemExit("error: a config file is not valid YAML (nothing was run):\n" + "\n".join(f"  {e}" for e in errors))
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
        stops.disarm()
    # A multirun's verdict comes from its job folders (jobs may have run in other processes).
    # A job refused because another process held its folder left no summary of its own: its code counts.
    sys.exit(max(sweep.exit_code or 0, *_exit_codes, 0))


def _show_sweep_table() -> None:
    """A sweep stopped before its end (Ctrl-C, or an error that Hydra reports and exits on) still
    shows where its jobs stand."""
    if sweep.active is not None and sweep.exit_code is None:
        callback, config = sweep.active
        if not any(Path(str(config.hydra.sweep.dir)).glob("**/.hydra")):
            return  # stopped before its first job (a sweep refused before launch): no table to show
        callback.on_multirun_end(config)


if __name__ == "__main__":
    main()
