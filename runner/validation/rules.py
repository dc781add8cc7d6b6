"""The rule of a config key: its type and range, written once next to the key in its YAML file
(in braces, in the comment on the key's own line), or derived from the key's name. Read without
torch (the validator runs before torch is imported).

    d_steps: 1          # discriminator steps per generator step {int >= 1}
    gamma: 0.99         # {float in (0, 1)}
    std: null           # {float > 0 or null}
    hidden: [256, 256]  # {list of int >= 1}
    theory: {}          # {map of str}
    betas: [0.9, 0.99]  # {2 x float in [0, 1)}

Grammar: alternatives joined by ` or `, each `null`, `bool`, `str`, `int` or `float` with an optional
bound (`> 0`, `>= 1`, `< 1`, `in (0, 1]`; a number may be written `2**64`), `list of X`,
`N x X` (a list of exactly N) or `map of X` (every value of a mapping). `int` takes integers only
(50.7 and 50.0 are refused alike: a float is never silently cut to an int); `float` takes
integers and floats, finite only (nan, inf and 1e400, which YAML and Hydra read as inf, are
refused). Booleans are not numbers.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass

# Keys named alike mean alike in every group: these need no comment (a comment replaces them).
DERIVED = {"lr": "float > 0", "*_lr": "float > 0", "steps": "int >= 1", "*_steps": "int >= 1",
           "epochs": "float > 0", "batch_size": "int >= 1", "*_batch_size": "int >= 1",
           "*_every": "int >= 1", "*_iters": "int >= 1", "samples": "int >= 1", "*_samples": "int >= 1",
           "dim": "int >= 1", "*_dim": "int >= 1", "weight_decay": "float >= 0", "eps": "float > 0",
           "momentum": "float in [0, 1)", "betas": "2 x float in [0, 1)"}
WORDS = ("null", "bool", "str", "int", "float", "list", "map")  # a `{...}` comment starting so must be a rule
_NUM = r"-?(?:2\*\*\d+|\d+(?:\.\d*)?(?:e[-+]?\d+)?)"
_BOUND = re.compile(rf"(?P<op>>=|<=|>|<)\s*(?P<x>{_NUM})|in\s*(?P<lo>[(\[])\s*(?P<a>{_NUM})\s*,\s*(?P<b>{_NUM})\s*(?P<hi>[)\]])")


class RuleError(ValueError):
    """A rule that does not parse (an error in a config file's comment)."""


@dataclass(frozen=True)
class Rule:
    kind: str  # null | bool | str | int | float | list | map
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    item: Rule | None = None  # list and map: the rule of each element
    length: int | None = None  # `N x`: the list's exact length

    def admits(self, v: object) -> bool:
        if self.kind == "null":
            return v is None
        if self.kind == "bool":
            return isinstance(v, bool)
        if self.kind == "str":
            return isinstance(v, str)
        if self.kind == "list":
            return isinstance(v, list) and self.length in (None, len(v)) and all(self.item.admits(x) for x in v)
        if self.kind == "map":
            return isinstance(v, dict) and all(self.item.admits(x) for x in v.values())
        if isinstance(v, bool) or not isinstance(v, int if self.kind == "int" else (int, float)):
            return False
        if self.kind == "float" and not math.isfinite(_as_float(v)):
            return False  # nan, inf, and an integer too large for a float
        return ((self.lo is None or (v > self.lo if self.lo_open else v >= self.lo))
                and (self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)))

    def describe(self, plural: bool = False) -> str:
        if self.kind == "null":
            return "null"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return "texts" if plural else "a text"
        if self.kind in ("list", "map"):
            n = f"{self.length} " if self.length else ""
            head = {("list", False): "a list of ", ("list", True): "lists of ", ("map", False): "a mapping to ",
                    ("map", True): "mappings to "}[self.kind, plural]
            return head + n + self.item.describe(plural=True)
        if self.kind == "int":
            noun = "integers" if plural else "an integer"
        else:  # a bounded range says it is finite; an open one says so in words
            bounded = self.lo is not None and self.hi is not None
            noun = ("" if bounded else "finite ") + "numbers" if plural else "a number" if bounded else "a finite number"
        if self.lo is not None and self.hi is not None:
            return f"{noun} in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{noun} {'>' if self.lo_open else '>='} {_num(self.lo)}"
        if self.hi is not None:
            return f"{noun} {'<' if self.hi_open else '<='} {_num(self.hi)}"
        return noun


Rules = tuple[Rule, ...]  # alternatives


def parse(text: str) -> Rules:
    """The alternatives of a rule written as in the module docstring; RuleError if it does not parse."""
    return tuple(_alternative(alt.strip(), text) for alt in re.split(r"\s+or\s+", text.strip()))


def _alternative(s: str, whole: str) -> Rule:
    if s in ("null", "bool", "str"):
        return Rule(s)
    if m := re.fullmatch(r"(list|map) of (.+)", s):
        return Rule(m[1], item=_alternative(m[2].strip(), whole))
    if m := re.fullmatch(r"(\d+) x (.+)", s):
        return Rule("list", item=_alternative(m[2].strip(), whole), length=int(m[1]))
    m = re.fullmatch(r"(int|float)\s*(.*)", s)
    if m is None or (m[2] and (b := _BOUND.fullmatch(m[2])) is None):
        raise RuleError(f"{{{whole}}} is not a rule: write e.g. {{int >= 1}}, {{float in (0, 1)}}, "
                        f"{{float > 0 or null}}, {{list of int >= 1}}, {{2 x float in [0, 1)}}")
    if not m[2]:
        return Rule(m[1])
    if b["op"]:
        x, op = _value(b["x"]), b["op"]
        return Rule(m[1], lo=x, lo_open=op == ">") if op[0] == ">" else Rule(m[1], hi=x, hi_open=op == "<")
    return Rule(m[1], lo=_value(b["a"]), hi=_value(b["b"]), lo_open=b["lo"] == "(", hi_open=b["hi"] == ")")


def _as_float(v: float) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf


def _value(s: str) -> float:
    sign = -1 if s.startswith("-") else 1
    s = s.lstrip("-")
    return sign * (2 ** int(s[3:]) if s.startswith("2**") else int(s) if s.isdigit() else float(s))


def _num(x: float) -> str:
    if isinstance(x, int) and x >= 2**32 and (x & (x - 1)) == 0:
        return f"2**{x.bit_length() - 1}"
    return f"{x:g}" if isinstance(x, float) else str(x)


def derived(name: str) -> str | None:
    """The rule a key of this name gets without a comment, if any."""
    return next((rule for pattern, rule in DERIVED.items() if fnmatch.fnmatchcase(str(name), pattern)), None)


def problem(key: str, value: object, rules: Rules) -> str | None:
    """None if `value` meets one of `rules`, else the message: key, value found, what is allowed."""
    if any(r.admits(value) for r in rules):
        return None
    allowed = " or ".join(r.describe() for r in rules)
    return f"{key}={value!r}: must be {allowed}{_hint(value, rules)}"


def _hint(v: object, rules: Rules) -> str:
    if isinstance(v, float) and math.isinf(v):
        return " (a number beyond ±1.8e308, such as 1e400, reads as inf)"
    if isinstance(v, float) and v.is_integer() and any(r.kind == "int" and r.admits(int(v)) for r in rules):
        return f" (write {int(v)}: {v!r} is a float, and a float is not taken as an integer)"
    if isinstance(v, bool):
        return " (true/false is not a number)"
    return ""
