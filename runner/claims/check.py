"""Checking claims against the real config before anything runs: each setting composes (so a
misspelt override is Hydra's own error, now), and every name a prediction reads resolves in it
(`optim.lr`, `task.sv_max`); predictions that read only the config are evaluated for every
setting, so a sqrt of a negative number is found here and not after the runs.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from omegaconf import OmegaConf

from runner.common.expr import CONSTANTS, FUNCTIONS, Expr, ExprError
from runner.claims.spec import ROOTS, Claim


def problems(claims: Iterable[Claim]) -> list[str]:
    """Every problem of every claim against the composed config; [] when all is well."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from runner.__main__ import CONF_DIR
    from runner.claims.jobs import job_overrides

    out: list[str] = []
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for claim in claims:
            cache: dict[tuple, dict[str, Any]] = {}
            for setting in claim.settings():
                groups = {k: v for k, v in setting.items() if "." not in k}  # seed, sampler, optim: compose
                key = tuple(sorted((k, str(v)) for k, v in groups.items()))
                if key not in cache:
                    try:
                        cfg = compose("config", overrides=job_overrides(claim, groups) + ["logger=none"])
                        cache[key] = OmegaConf.to_container(cfg, resolve=True)
                    except Exception as e:  # noqa: BLE001 - Hydra's message names the override
                        cache[key] = {}
                        out.append(f"{claim.path}: experiment/sweep {' '.join(job_overrides(claim, groups))}: "
                                   f"{type(e).__name__}: {str(e).splitlines()[0]}")
                if not cache[key]:
                    break
                cfg = copy.deepcopy(cache[key])
                for k, v in setting.items():
                    if "." in k:
                        _set(cfg, k.lstrip("+~"), v)
                found = _evaluate(claim, cfg)
                if found:
                    shown = " ".join(f"{k}={v}" for k, v in setting.items()) or "the only setting"
                    out.append(f"{claim.path}: {found} (setting {shown})")
                    break
    GlobalHydra.instance().clear()
    return out


def _set(cfg: dict[str, Any], dotted: str, value: Any) -> None:
    *path, last = dotted.split(".")
    for part in path:
        cfg = cfg.setdefault(part, {})
    cfg[last] = value


def _evaluate(claim: Claim, cfg: dict[str, Any]) -> str | None:
    """A problem with the claim's expressions in this config, or None."""
    names: dict[str, Any] = dict(cfg)
    exprs = [(f"define.{n}", e) for n, e in claim.define.items()]
    if isinstance(claim.predict, Expr):
        exprs.append(("predict", claim.predict))
    for label, expr in exprs:
        reads_run = False
        for dotted in expr.names:
            root = dotted.split(".")[0]
            if root in ROOTS or root in claim.define and names.get(root) is _RUN:
                reads_run = True
                continue
            if root not in names and root not in CONSTANTS and root not in claim.define:
                allowed = ", ".join(sorted([*cfg, *claim.define, *ROOTS, *CONSTANTS]))
                return (f"{label}={expr.text!r}: unknown name {root!r}; names: {allowed}; "
                        f"functions: {', '.join(FUNCTIONS)}")
        if reads_run:  # known only after the run: evaluated then
            if label.startswith("define."):
                names[label.split(".", 1)[1]] = _RUN
            continue
        try:
            value = expr.evaluate(names)
        except ExprError as e:
            return f"{label}={expr.text!r}: {e}"
        if label.startswith("define."):
            names[label.split(".", 1)[1]] = value
        elif not claim.is_word and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return f"predict={expr.text!r}: gives {value!r}, not a number"
    return None


_RUN = object()  # a defined name that depends on the run's results
