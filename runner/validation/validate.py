"""Check the whole config before any work starts and report every problem at once, each
naming the key, the value found and what is allowed (after torchtune's `config/_validate.py`).

Two passes, the first without torch so that a mistake is refused in about the time Hydra takes
to compose the config:

- `problems`: every value against its rule (type, range, integrality; declared next to the key in
  its YAML file or derived from its name, runner/validation/rules.py), the top-level choices
  (device, precision, ...), the model against the task's list, and data_dir.
- `classes.deep_problems`, on a config that passed the first: what needs the classes
  themselves (torch and the task's module imported): keys against the real constructor's
  signature, CUDA's presence, and the task's own `check(cfg)` staticmethod, which sees the whole
  config and can rely on each value having its type and range.

The first pass's problems are reported without the second's: the second assumes what the first
checks, and waiting for torch would cost the seconds the first saves.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runner.task.protocol import ConfigError
from runner.validation.rules import Rules, derived, parse, problem
from runner.validation.sources import declared, search_dirs

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
PRECISIONS = ("auto", "fp32", "bf16", "fp64")
LOGGER_MODES = ("online", "offline", "disabled")


SWEEP_CHECKED: set[tuple[str, ...]] = set()  # the jobs (overrides) this process's sweep found no problem in


def sweep_checked(jobs: Iterable[Iterable[str]]) -> None:
    """The jobs of the sweep about to launch, each checked by `problems` and `deep_problems` without
    its devices (hydra_plugins/runner_sweeper) and found clean: their runs skip the first pass
    (`[]` when the sweep ends)."""
    SWEEP_CHECKED.clear()
    SWEEP_CHECKED.update(tuple(job) for job in jobs)


def checked_by_sweep(overrides: Iterable[str] | None) -> bool:
    """Whether the job of these overrides is one the running sweep checked and found clean."""
    return overrides is not None and tuple(overrides) in SWEEP_CHECKED


def validate(cfg: DictConfig, choices: Mapping[str, str], sources: Iterable[Mapping] | None = None,
             overrides: Iterable[str] | None = None) -> None:
    """Raise ConfigError listing every problem; `choices` maps group to selected option, `sources`
    are Hydra's config sources (default: the config's or the running job's, else the runner's conf/).
    `overrides`: the job's, when it is a sweep's: a job the sweep has checked (`sweep_checked`)
    skips the first pass, which the sweep ran on the same config (a third of a small job's checks)."""
    found = [] if checked_by_sweep(overrides) else problems(cfg, choices, sources)
    if not found:
        from runner.validation.classes import deep_problems  # imports torch

        found = deep_problems(cfg, choices)
    if found:
        raise ConfigError(found)


def problems(cfg: DictConfig, choices: Mapping[str, str], sources: Iterable[Mapping] | None = None) -> list[str]:
    """The first pass (no torch): every value, the top-level choices, model and data_dir."""
    if sources is None:
        sources = _sources(cfg)
    rules = declared(choices, search_dirs(sources))
    found = [*_top_level(cfg), *_values(cfg, rules), *_data_dir(cfg)]
    for part in ("launcher", "sweeper"):  # a sweep's, checked before launch: the files' rules only
        if "hydra" in cfg and part in cfg.hydra:
            found += _values(cfg.hydra[part], rules, f"hydra.{part}.", derive=False)
    fits, model = cfg.task.get("models"), choices.get("model")
    if fits is not None and model is not None and model not in fits:
        found.append(f"model={model}: does not fit task={choices.get('task')}; models that fit: {', '.join(fits)}")
    return found


def _sources(cfg: DictConfig) -> list | None:
    """Hydra's config sources: the composed config's own, else the running job's (None: conf/)."""
    from hydra.core.hydra_config import HydraConfig

    hydra = cfg.hydra if "hydra" in cfg else HydraConfig.get() if HydraConfig.initialized() else None
    return OmegaConf.to_container(hydra.runtime.config_sources) if hydra is not None else None


def _top_level(cfg: DictConfig) -> Iterable[str]:
    dev = str(cfg.device)
    if not DEVICE_PATTERN.fullmatch(dev):
        yield f"device={dev!r}: unknown device; allowed: auto, cpu, cuda, cuda:N"
    threads = cfg.threads
    if threads != "auto" and not (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1):
        yield f"threads={threads!r}: allowed: auto, or an integer >= 1 (CPU threads per run)"
    if cfg.precision not in PRECISIONS:
        yield f"precision={cfg.precision!r}: allowed: {', '.join(PRECISIONS)}"
    if cfg.objective.use not in ("final", "best"):
        yield f"objective.use={cfg.objective.use!r}: allowed: final, best"
    mode = cfg.logger.get("mode")
    if mode is not None and mode not in LOGGER_MODES:
        yield f"logger.mode={mode!r}: allowed: {', '.join(LOGGER_MODES)}"


def _values(node: DictConfig, rules: Mapping[str, Rules], prefix: str = "", derive: bool = True) -> Iterable[str]:
    """Every key with a rule is checked against it; any other number must be finite."""
    for key in node:
        path = f"{prefix}{key}"
        if path == "hydra":
            continue
        rule = rules.get(path) or (_derived(str(key)) if derive else None)
        try:
            value = node[key]
            nested = rule is None and isinstance(value, DictConfig)
            plain = value if nested or not isinstance(value, (DictConfig, ListConfig)) else \
                OmegaConf.to_container(value, resolve=True)
        except OmegaConfBaseException:  # `???` or an interpolation of one (total_steps): the runner sets it
            continue
        if nested:
            yield from _values(value, rules, f"{path}.", derive)
        elif rule is not None:
            if (p := problem(path, plain, rule)) is not None:
                yield p
        elif not _finite(plain):
            yield f"{path}={plain!r}: must be finite (no nan or inf)"


@functools.cache
def _derived(name: str) -> Rules | None:
    text = derived(name)
    return parse(text) if text else None


def _finite(v: Any) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, list):
        return all(_finite(x) for x in v)
    return all(_finite(x) for x in v.values()) if isinstance(v, dict) else True


def _data_dir(cfg: DictConfig) -> Iterable[str]:
    """data_dir, where the task reads it: an existing folder, or one that can be created (it is
    created when a download starts, not here)."""
    if "${data_dir}" not in str(OmegaConf.to_container(cfg.task, resolve=False)):
        return
    raw = str(cfg.data_dir)
    path, why = Path(raw).expanduser(), None
    try:
        if path.exists():
            why = None if path.is_dir() else "is a file, not a folder"
        else:
            parent = next(p for p in path.parents if p.exists())
            if not parent.is_dir():
                why = f"cannot be created: {parent} is a file"
            elif not os.access(parent, os.W_OK | os.X_OK):
                why = f"does not exist and cannot be created: {parent} is not writable"
    except OSError as e:
        why = f"cannot be read ({e.strerror})"
    if why:
        yield f"data_dir={raw}: {why}; set data_dir=... (or RUNNER_DATA_DIR) to a folder that holds the data or can be made"
