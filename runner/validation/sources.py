"""The YAML files of the config search path, read for the validator without torch: a syntax
error named in one line (file, line, column) instead of PyYAML's traceback, and the rules that
comments declare next to each key (runner/validation/rules.py), by the key's place in the
composed config.

A file of group `task` chosen as `task=gan` puts its keys under `task.` (its package), one with
`# @package _global_` at the root, `+optim@optim_discriminator=adam` puts conf/optim/adam.yaml's
under `optim_discriminator.`.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from runner.validation.rules import WORDS, Rules, RuleError, parse

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser: ~0.1 ms a file
_RULE = re.compile(r"\{([^{}]*)\}")
_PACKAGE = re.compile(r"^#\s*@package\s+(\S+)", re.M)


def search_dirs(sources: Iterable[Mapping[str, Any]] | None = None) -> list[Path]:
    """The folders of Hydra's search path (`hydra.runtime.config_sources`, file entries), else the
    runner's own configs."""
    dirs = [Path(s["path"]) for s in sources or () if s.get("schema") == "file" and s.get("path")]
    if not dirs:
        spec = importlib.util.find_spec("runner.conf")
        dirs = [Path(spec.origin).parent] if spec and spec.origin else []
    return dirs


def dirs_in_argv(argv: Sequence[str]) -> list[Path]:
    """Config folders a command line adds: --config-dir/-cd DIR and hydra.searchpath=[...] entries."""
    found = []
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith("--config-dir="):
            found.append(arg.split("=", 1)[1])
        elif arg.lstrip("+").startswith("hydra.searchpath="):
            found += [p.strip().strip("'\"") for p in arg.split("=", 1)[1].strip("[]").split(",")]
    return [Path(p.removeprefix("file://")) for p in found if p and "://" not in p.removeprefix("file://")]


def syntax_errors(dirs: Iterable[Path]) -> list[str]:
    """One line per YAML file under `dirs` that PyYAML (as Hydra calls it) cannot read."""
    errors = []
    for path in sorted({p for d in dirs if d.is_dir() for p in d.rglob("*.yaml")}):
        try:
            _duplicate_keys(yaml.compose(path.read_text(encoding="utf-8"), Loader=_Loader))
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            context = (f" ({e.context} at line {e.context_mark.line + 1}, column {e.context_mark.column + 1})"
                       if e.context and e.context_mark and e.context_mark is not mark else "")
            errors.append(f"{path}{where}: {e.problem or e.context}{context}")
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            errors.append(f"{path}: {type(e).__name__}: {e}")
    return errors


def _duplicate_keys(node: yaml.Node | None) -> None:
    """OmegaConf refuses a key given twice in one mapping: say where, as a syntax error."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value in seen:
                raise yaml.MarkedYAMLError(problem=f"duplicate key {key.value!r} (first at line {seen[key.value]})",
                                           problem_mark=key.start_mark)
            seen[getattr(key, "value", None)] = key.start_mark.line + 1
            _duplicate_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _duplicate_keys(item)


def declared(choices: Mapping[str, str | None], dirs: Sequence[Path], primary: str = "config") -> dict[str, Rules]:
    """Rules declared in the files a config was composed from, by dotted key in the composed config.
    A group's own file wins over a global one (an experiment or a task file that sets other groups)."""
    files = [("", _find(dirs, primary))]
    for choice, option in choices.items():
        if option is None:
            continue
        group, _, package = choice.partition("@")
        files.append((package or group.replace("/", "."), _find(dirs, f"{group}/{option}")))
    return _table(tuple((package, str(path), path.stat().st_mtime_ns) for package, path in files if path))


@functools.lru_cache(maxsize=256)
def _table(files: tuple[tuple[str, str, int], ...]) -> dict[str, Rules]:
    table: dict[str, Rules] = {}
    for natural in (False, True):
        for package, path, mtime_ns in files:
            header, rules = _file_rules(path, mtime_ns)
            prefix = {None: package, "_global_": "", "_group_": package}.get(header, header)
            if (prefix == package != "") == natural:
                table.update({f"{prefix}.{k}" if prefix else k: r for k, r in rules.items()})
    return table


def _find(dirs: Sequence[Path], name: str) -> Path | None:
    return next((d / f"{name}.yaml" for d in dirs if (d / f"{name}.yaml").is_file()), None)


@functools.lru_cache(maxsize=256)
def _file_rules(path: str, mtime_ns: int) -> tuple[str | None, dict[str, Rules]]:
    """(the `# @package` header, {key path in the file: its declared rule})."""
    text = Path(path).read_text(encoding="utf-8")
    header = _PACKAGE.search(text[:512])  # where Hydra reads the header
    lines, rules = text.splitlines(), {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for key, value in node.value:
            name = f"{prefix}{key.value}"
            if name == "defaults":
                continue
            line = key.start_mark.line
            start = value.end_mark.column if value.end_mark.line == line else key.end_mark.column
            comment = lines[line][start:].partition("#")[2]
            for body in _RULE.findall(comment):
                if body.strip().split(" ")[0] in WORDS or re.match(r"\s*\d+ x ", body):
                    try:
                        rules[name] = parse(body)
                    except RuleError as e:
                        raise RuleError(f"{path}, line {line + 1}: {e}") from None
            walk(value, f"{name}.")

    walk(yaml.compose(text, Loader=_Loader), "")
    return (header[1] if header else None), rules
