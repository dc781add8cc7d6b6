"""The checks of task=diffusion's config (tasks/diffusion/task.py's `check`): every problem with its
values at once, each naming the key, the value found and what is allowed, before any work starts."""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig, ListConfig

from tasks.diffusion.closed_forms import default_times, gaussian_cov, gaussian_mean

TARGETS, MIXTURES, PROCESSES, SCHEDULES, GRIDS, PRIORS = (
    ("gaussian", "gmm"), ("ring", "grid", "random"), ("vp", "ve"), ("linear", "cosine"),
    ("uniform", "quadratic", "karras"), ("exact", "standard"))


def check_config(cfg: DictConfig) -> list[str]:
    """Every problem with the task's values, each naming key, value and what is allowed."""
    problems = []
    for key, allowed in (("target", TARGETS), ("mixture", MIXTURES), ("process", PROCESSES),
                         ("schedule", SCHEDULES), ("grid", GRIDS), ("prior", PRIORS)):
        if cfg[key] not in allowed:
            problems.append(f"task.{key}={cfg[key]!r}: allowed: {', '.join(allowed)}")
    steps = [cfg.steps] if isinstance(cfg.steps, int) else list(cfg.steps) if isinstance(cfg.steps, ListConfig) else None
    if not steps or not all(isinstance(n, int) and n > 0 for n in steps):
        problems.append(f"task.steps={cfg.steps}: a positive integer or a list of them, e.g. [4,8,16,32,64,128]")
    elif any(b <= a for a, b in zip(steps, steps[1:])):
        problems.append(f"task.steps={steps}: the step counts must be strictly increasing, e.g. [4,8,16,32,64,128]")
    # each key's own type and range are its YAML rule's (runner/validation/rules.py), checked before this
    if cfg.ot_samples > cfg.samples:
        problems.append(f"task.ot_samples={cfg.ot_samples}: at most task.samples={cfg.samples}")
    lo, hi = default_times(cfg.process, cfg.schedule) if cfg.process in PROCESSES else (None, None)
    t_min, t_max = cfg.t_min or lo, cfg.t_max or hi
    if t_min is not None and not 0 < t_min < t_max:
        problems.append(f"task.t_min={t_min}, task.t_max={t_max}: need 0 < t_min < t_max")
    elif cfg.process == "vp" and t_max > (1.0 if cfg.schedule == "linear" else 0.999):
        problems.append(f"task.t_max={t_max}: the vp {cfg.schedule} schedule needs t_max <= "
                        f"{1.0 if cfg.schedule == 'linear' else 0.999}")
    if cfg.target == "gmm" and cfg.mixture in ("ring", "grid") and cfg.dim != 2:
        problems.append(f"task.mixture={cfg.mixture} task.dim={cfg.dim}: ring and grid are 2-D; "
                        f"use task.dim=2 or task.mixture=random")
    if cfg.target == "gmm" and cfg.mixture == "grid" and math.isqrt(cfg.components) ** 2 != cfg.components:
        problems.append(f"task.components={cfg.components}: a grid needs a square number (4, 9, 16, ...)")
    if cfg.target == "gaussian":
        problems += _check_gaussian(cfg)
    return problems


def _check_gaussian(cfg: DictConfig) -> list[str]:
    from omegaconf import OmegaConf

    mean = OmegaConf.to_container(cfg.mean) if isinstance(cfg.mean, ListConfig) else cfg.mean
    cov = OmegaConf.to_container(cfg.cov) if isinstance(cfg.cov, ListConfig) else cfg.cov
    problems = []
    try:
        gaussian_mean(mean, cfg.dim, dtype=torch.float64)
    except (ValueError, RuntimeError, TypeError):
        problems.append(f"task.mean={mean}: null, a number or a list of task.dim={cfg.dim} numbers")
    try:
        c = gaussian_cov(cov, cfg.dim, dtype=torch.float64)
        if c.shape != (cfg.dim, cfg.dim):
            raise ValueError
    except (ValueError, RuntimeError, TypeError):
        return [*problems, f"task.cov={cov}: null, a number, a list of {cfg.dim} variances or a "
                           f"{cfg.dim}x{cfg.dim} matrix (task.dim={cfg.dim})"]
    if not torch.allclose(c, c.T):
        problems.append(f"task.cov={cov}: not symmetric")
    elif torch.linalg.eigvalsh(c).min() <= 0:
        problems.append(f"task.cov={cov}: not positive definite (smallest eigenvalue "
                        f"{float(torch.linalg.eigvalsh(c).min()):.3g}); every eigenvalue must be > 0")
    return problems
