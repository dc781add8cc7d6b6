"""A sweep of runs: the end-of-sweep table, the sweep folder and the exit status (`summary`, a
Hydra callback). Hydra's sweepers and launchers run the jobs; the covering sweeper is in
hydra_plugins/runner_sweeper/, where Hydra discovers plugins.

May import runner.run and runner.common."""
