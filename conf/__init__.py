"""The configs, installed as the package `runner.conf` (pyproject.toml maps it onto this folder) so
that a wheel ships them. Hydra reads the YAML files; this file only makes the folder a package."""
