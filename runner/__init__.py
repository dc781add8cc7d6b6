"""runner: a config-driven runner for optimisation-convergence experiments.

`runner` (the console script) and `python -m runner` are the Hydra app in `runner.__main__`.
The task owns its algorithm (`tasks/`); this package owns everything cross-cutting: config
validation, building objects from config, the step loop, metrics files, wandb and the terminal.
"""
