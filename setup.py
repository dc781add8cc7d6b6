"""The package list, found rather than written out, so that a new package folder (a task family in
tasks/, a subpackage of runner/) ships in the wheel without an edit; conf/ ships as runner.conf
(pyproject.toml maps the folder). Everything else about the build is in pyproject.toml."""

from setuptools import find_namespace_packages, find_packages, setup

setup(packages=[*find_packages(include=["runner", "runner.*", "tasks", "tasks.*", "claims"]),
                *find_namespace_packages(include=["hydra_plugins", "hydra_plugins.*"]),  # Hydra's namespace
                "runner.conf"])
