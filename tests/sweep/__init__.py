"""Tests of sweeps (runner/sweep and hydra_plugins/): the end-of-sweep table, skip-finished, the
launchers and sweepers."""
