"""Learning-rate schedules that torch builds from two pieces or from the optimizer's own lr.

`conf/sched/*.yaml` point at torch's classes directly where one class is the schedule
(`CosineAnnealingLR`, `LinearLR`); these factories cover the rest.
Every schedule is relative to each optimizer's own lr, so Muon and its AdamW side keep their ratio.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, OneCycleLR, SequentialLR

from runner.validation.validate import ConfigError


def constant(optimizer: Optimizer) -> None:
    """No schedule: the lr stays as configured. Returning no scheduler (rather than torch's
    ConstantLR with factor 1) spares a scheduler step on every training step."""
    return None


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup: float = 0.05,
                  start_factor: float = 0.01, eta_min: float = 0.0) -> LRScheduler:
    """Linear warmup over the first `warmup` fraction of the steps, then cosine decay."""
    n_warm = max(1, round(warmup * total_steps))
    ramp = LinearLR(optimizer, start_factor=start_factor, end_factor=1.0, total_iters=n_warm)
    decay = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - n_warm), eta_min=eta_min)
    return SequentialLR(optimizer, [ramp, decay], milestones=[n_warm])


def onecycle(optimizer: Optimizer, total_steps: int, pct_start: float = 0.25, div_factor: float = 25.0,
             final_div_factor: float = 1e4, anneal_strategy: str = "cos") -> LRScheduler:
    """Smith's one-cycle policy peaking at each group's configured lr. Momentum is left alone
    (`cycle_momentum=False`) so it works with every optimizer, not only those with momentum."""
    if not (pct_start * total_steps > 1 and pct_start < 1):  # torch divides by zero on an empty phase
        raise ConfigError([f"sched.pct_start={pct_start:g}: a one-cycle run of {total_steps} steps needs "
                           f"pct_start x steps > 1 and pct_start < 1 (a warm-up phase of more than a step, "
                           f"then a decay); use more steps or a pct_start in ({1 / total_steps:.3g}, 1)"])
    peak = [g["lr"] for g in optimizer.param_groups]
    return OneCycleLR(optimizer, max_lr=peak, total_steps=total_steps, pct_start=pct_start,
                      div_factor=div_factor, final_div_factor=final_div_factor,
                      anneal_strategy=anneal_strategy, cycle_momentum=False)
