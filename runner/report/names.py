"""Group names in the report: short automatic ones, and the user's own (`--label 'SELECTOR:NAME'`).

An automatic name holds only the keys whose values differ between groups, each as the shortest
dot-suffix that no other shown key shares (`task.method=npg optim.lr=0.1` -> `method=npg lr=0.1`);
the overrides come first, the resolved config only where they do not tell groups apart. A user's
label names the one group whose values match every `key=value` of its selector (a key may be a
suffix, `lr` for `optim.lr`); a selector that matches no group or several is a BadLabel naming it
and listing the groups' automatic names.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

import yaml

from runner.report.results import Group

ALL = "all runs"  # the name of a report's only group: nothing differs


class BadLabel(ValueError):
    """A --label that matches no group, or several."""


def label_arg(text: str) -> tuple[dict[str, str], str]:
    """`--label 'key=value [key=value ...]:NAME'` as (selector, name); argparse shows the error."""
    selector, sep, name = text.partition(":")
    items = selector.split()
    bad = [t for t in items if "=" not in t or t.startswith("=")]
    if not sep or not name.strip() or not items or bad:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected 'key=value [key=value ...]:NAME', e.g. 'optim.lr=0.1:GD 1/L'"
            + (f" ({', '.join(map(repr, bad))} is not key=value)" if bad else ""))
    return dict(t.lstrip("+~").split("=", 1) for t in items), name.strip()


def values(group: Group) -> dict[str, Any]:
    """What a group's runs were given: the resolved config's values, then the overrides as written."""
    run = group.runs[0]
    given = dict(o.lstrip("+~").split("=", 1) for o in run.overrides if "=" in o)
    return {**run.config, **given}


def shorten(keys: Sequence[str]) -> dict[str, str]:
    """Each key -> its shortest dot-suffix that no other of `keys` ends with."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for i in range(len(parts) - 1, -1, -1):
            suffix = ".".join(parts[i:])
            if not any(o != key and (o == suffix or o.endswith("." + suffix)) for o in keys):
                break
        short[key] = suffix
    return short


def auto_names(groups: Sequence[Group]) -> list[list[tuple[str, str, str]]]:
    """Per group, its (key, short key, value) parts that tell it apart from the other groups."""
    overrides = [dict(o.lstrip("+~").split("=", 1) for o in g.runs[0].overrides if "=" in o) for g in groups]
    keys = _differing(overrides)
    if len({tuple(o.get(k) for k in keys) for o in overrides}) < len(groups):  # overrides alone do not tell them apart
        configs = [{k: str(v) for k, v in g.config.items()} for g in groups]
        keys += [k for k in _differing(configs) if k not in keys and not any(k.startswith(o + ".") for o in keys)]
        overrides = [{**c, **o} for c, o in zip(configs, overrides)]
    short = shorten(keys)
    return [[(k, short[k], o[k]) for k in keys if k in o] for o in overrides]


def _differing(items: Sequence[dict[str, str]]) -> list[str]:
    keys = dict.fromkeys(k for d in items for k in d)
    return [k for k in keys if len({d.get(k) for d in items}) > 1]


def name_groups(groups: Sequence[Group], labels: Sequence[tuple[dict[str, str], str]] = ()) -> None:
    """Sets each group's `parts` and `label`: its automatic name, or the user's name from `labels`."""
    for g, parts in zip(groups, auto_names(groups)):
        g.parts = parts
        g.label = " ".join(f"{s}={v}" for _, s, v in parts) if g.config else g.runs[0].path.name
        g.label = g.label or ALL
    seen: dict[str, int] = {}
    for g in groups:  # equal names for different configs (a key only the config holds, e.g. a default changed)
        seen[g.label] = seen.get(g.label, 0) + 1
        if seen[g.label] > 1:
            g.label += f" (config {seen[g.label]})"
    chosen = {}
    for selector, name in labels:
        hits = [g for g in groups if all(_matches(values(g), k, v) for k, v in selector.items())]
        if len(hits) != 1:
            said = " ".join(f"{k}={v}" for k, v in selector.items())
            unknown = [k for k in selector if not any(_matches(values(g), k, None) for g in groups)]
            raise BadLabel(f"--label '{said}:{name}' matches {'no group' if not hits else f'{len(hits)} groups'}"
                           f"{''.join(f' (no group has a key {k} or ending in .{k})' for k in unknown)}"
                           f"{': ' + '; '.join(g.label for g in hits) if hits else ''}; the groups are: "
                           f"{'; '.join(g.label for g in groups)}")
        if id(hits[0]) in chosen and chosen[id(hits[0])] != name:
            raise BadLabel(f"--label '{name}' and --label '{chosen[id(hits[0])]}' both name the group {hits[0].label}")
        chosen[id(hits[0])] = name
    for g in groups:
        g.label = chosen.get(id(g), g.label)
    names = [g.label for g in groups]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BadLabel(f"two groups would be named {', '.join(map(repr, twice))}: give each group its own --label name")


def _matches(given: dict[str, Any], key: str, value: str | None) -> bool:
    """Whether a group's `given` values hold `key` (or a key ending in `.key`) equal to `value`
    (with None: at all)."""
    return any(value is None or _same(v, value) for k, v in given.items() if k == key or k.endswith("." + key))


def _same(found: Any, wanted: str) -> bool:
    a, b = _parsed(found), _parsed(wanted)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0) or a == b
    return a == b


def _parsed(v: Any) -> Any:
    """An override's text as YAML reads it (`0.1`, `1e-3`, `[4, 8]`); text that is not YAML as it is."""
    if not isinstance(v, str):
        return v
    try:
        return float(v)  # Hydra reads 1e-3 as a number, YAML 1.1 as text
    except ValueError:
        pass
    try:
        return yaml.safe_load(v)
    except yaml.YAMLError:
        return v
