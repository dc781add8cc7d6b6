"""Tasks: one package per task family, discovered through config, never listed in code.

A family is a folder here with its task class in `task.py`, which `conf/task/<name>.yaml` points
`_target_` at, beside its helpers and its pictures: `classifier/`, `gan/`, `diffusion/`,
`gridworld/`, `objectives/`. `shared/` holds what several families use. A task imports the runner only from
runner.task (the contract, and what a task may use) and runner.common, and never imports
another family.
"""
