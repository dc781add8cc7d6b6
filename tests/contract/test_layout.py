"""The layout README's "Layout" section draws: each package of runner/ imports only the packages
below it, a task imports the runner only through runner.task (and runner.common) and no other
task family, and no two modules import each other (directly or round a longer loop). Imports are read with `ast`
from the source, those inside functions and under TYPE_CHECKING included: a circle that only
type hints close is still a circle to a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

# What each package of runner/ may import of the runner besides itself (README, "Layout"; each
# package's docstring says the same). The app (__main__) and the benchmark stand above them all.
MAY_IMPORT = {
    "common": set(),
    "task": set(),
    "validation": {"task"},
    "tracking": set(),
    "resume": {"common"},
    "run": {"task", "resume", "tracking", "validation", "common"},
    "lanes": {"run", "task", "resume", "tracking", "validation", "common"},
    "sweep": {"run", "common"},
    "report": {"run", "common"},
    "claims": {"__main__", "sweep", "run", "common"},
}
SOURCES = ("runner", "tasks", "hydra_plugins")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for top in SOURCES for p in sorted((ROOT / top).rglob("*.py"))}


def imports(path: Path) -> set[str]:
    """Every module of the project `path` imports, as dotted names (a `from a import b` of a
    module b counts as a.b)."""
    known = modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                      for a in node.names}
    return {m for m in found if m.split(".")[0] in SOURCES}


def package_of(module: str) -> str:
    """runner.run.job -> run; runner.__main__ -> __main__; tasks.gan.task -> gan."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_runner_package_imports_only_the_packages_below_it():
    wrong = []
    for name, path in modules().items():
        if not name.startswith("runner.") or package_of(name) not in MAY_IMPORT:
            continue
        own = package_of(name)
        for target in imports(path):
            if target.startswith("tasks"):
                wrong.append(f"{name} imports {target}: the runner reaches tasks only through config (_target_)")
            elif target.startswith("runner.") and package_of(target) not in MAY_IMPORT[own] | {own}:
                wrong.append(f"{name} imports {target}: runner.{own} may import "
                             f"{sorted(MAY_IMPORT[own]) or 'nothing else of runner'}")
    assert not wrong, "\n".join(wrong)


def test_a_task_imports_the_runner_only_through_runner_task_or_common_and_no_other_family():
    wrong = []
    for name, path in modules().items():
        if not name.startswith("tasks."):
            continue
        family = package_of(name)
        for target in imports(path):
            if target.startswith("runner") and not target.startswith(("runner.task", "runner.common")):
                wrong.append(f"{name} imports {target}: a task uses the runner through runner.task "
                             f"(and runner.common, below everything) only")
            elif target.startswith("tasks.") and package_of(target) not in (family, "shared"):
                wrong.append(f"{name} imports {target}: a family shares code through tasks/shared/")
    assert not wrong, "\n".join(wrong)


def test_no_two_modules_import_each_other():
    graph = {name: {t for t in imports(path) if t in modules() and t != name} for name, path in modules().items()}
    circles, done = [], set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            circles.append(" -> ".join(stack[stack.index(node):] + [node]))
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, stack + [node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])
    # A package's __init__ is imported on the way to each of its modules; the layout keeps them
    # docstrings only, so they import nothing and close no circle.
    assert not circles, "import circles:\n" + "\n".join(circles)


@pytest.mark.parametrize("path", sorted((ROOT / "conf" / "task").glob("*.yaml")), ids=lambda p: p.stem)
def test_each_task_config_points_at_the_task_module_of_a_family(path):
    node = yaml.safe_load(path.read_text())
    target = (node if "_target_" in node else node["task"])["_target_"]  # `# @package _global_` files nest it
    parts = target.split(".")
    assert len(parts) == 4 and parts[0] == "tasks" and parts[2] == "task", \
        f"{path.name}: _target_ {target} is not tasks.<family>.task.<Class>"
    assert (ROOT / "tasks" / parts[1] / "__init__.py").exists(), f"{path.name}: no package tasks/{parts[1]}/"


def test_each_package_says_what_it_owns_and_what_it_may_import():
    for init in sorted([*(ROOT / "runner").glob("*/__init__.py"), *(ROOT / "tasks").glob("*/__init__.py")]):
        tree = ast.parse(init.read_text())
        doc = ast.get_docstring(tree)
        assert doc, f"{init.relative_to(ROOT)} has no docstring"
        assert all(isinstance(n, ast.Expr) for n in tree.body), f"{init.relative_to(ROOT)} holds code, not only its docstring"
        if init.parent.parent.name == "runner":
            assert "import" in doc.lower(), f"{init.relative_to(ROOT)} does not say what it may import"


def test_the_tests_mirror_the_packages_they_test():
    folders = {d.name for d in (ROOT / "tests").iterdir() if d.is_dir() and (d / "__init__.py").exists()}
    packages = {d.name for d in (ROOT / "runner").iterdir() if (d / "__init__.py").exists()} | {"tasks", "contract"}
    assert folders <= packages, f"tests/ folders that name no package: {sorted(folders - packages)}"
    loose = sorted(p.name for p in (ROOT / "tests").glob("test_*.py"))
    assert not loose, f"tests at the top of tests/, outside the folder of the package they test: {loose}"
