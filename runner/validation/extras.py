"""Optional parts of the install (pyproject.toml's optional-dependencies). A command line that
chooses one whose packages are missing stops before Hydra composes anything, with one line naming
the extra to install; Hydra alone says only "Could not load 'hydra/sweeper/optuna'".

    runner -m hydra/sweeper=optuna_lr     # without the extra: error: ... pip install "runner[optuna]"
"""

from __future__ import annotations

import importlib.util

# Override prefix on the command line -> (the module it needs, the extra that installs it).
NEEDS = {"hydra/sweeper=optuna": ("hydra_plugins.hydra_optuna_sweeper", "optuna")}


def missing(argv: list[str]) -> str | None:
    """The error for the first override in `argv` whose extra is not installed, else None."""
    for arg in argv:
        for prefix, (module, extra) in NEEDS.items():
            if arg.lstrip("+~").startswith(prefix) and not _installed(module):
                return (f"{arg} needs {module}, which is not installed: pip install \"runner[{extra}]\" "
                        f"(in a clone: pip install -e \".[{extra}]\")")
    return None


def require(argv: list[str]) -> None:
    """Exit with status 1 and the one-line error of `missing`, if there is one."""
    if (error := missing(argv)) is not None:
        raise SystemExit(f"error: {error}")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing too
        return False
