"""Step sizes that theory picks, named in the config (`task.theory={lr: 2/(mu+L)}`) instead of typed:
each value is an expression of the problem's constants (mu, L, kappa, dim, ...), parsed and
evaluated by the project's safe evaluator (runner/common/expr.py: never eval), checked before any
work starts, and applied to the optimizer's node by the runner (build.optimizers, `optim_values`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from runner.common.expr import CONSTANTS, ExprError, parse


def problems(theory: Mapping[str, str], names: Iterable[str], optim_keys: Iterable[str], where: str) -> list[str]:
    """What is wrong with `theory` before the problem is built: a key the optimizer does not have,
    an expression that does not parse, a name the problem does not define."""
    found, names, keys = [], set(names), list(optim_keys)
    for key, text in theory.items():
        if key not in keys:
            found.append(f"task.theory.{key}: the optimizer has no key {key!r}; its keys: {', '.join(keys)}")
            continue
        try:
            expr = parse(str(text))
        except ExprError as e:
            found.append(f"task.theory.{key}={text!r}: {e}")
            continue
        unknown = [n for n in expr.names if n not in names and n not in CONSTANTS]
        if unknown:
            found.append(f"task.theory.{key}={text!r}: {', '.join(unknown)} not defined by {where}; "
                         f"defined: {', '.join(sorted(names)) or 'none'}")
    return found


def values(theory: Mapping[str, str], constants: Mapping[str, float]) -> dict[str, float]:
    """Each expression's value on the built problem's constants (ExprError: 1/mu with mu = 0, a
    value that is not a finite number)."""
    out = {}
    for key, text in theory.items():
        try:
            value = parse(str(text)).evaluate(constants)
        except ExprError as e:
            raise ExprError(f"task.theory.{key}={text!r} on this problem ({_show(constants)}): {e}") from None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ExprError(f"task.theory.{key}={text!r} gives {value!r} on this problem ({_show(constants)}): "
                            f"not a finite number")
        out[key] = float(value)
    return out


def _show(constants: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:.6g}" for k, v in constants.items() if isinstance(v, (int, float)))
