"""Optimisation problems with a known optimum, in float64 (`runner task=objective problem=NAME`).

Owns: the problems (problems.py: each knows x*, f* and mu, L where defined), their one-time
high-precision solve with its cache (solve.py), the step sizes theory picks (theory.py), the
iterate the optimizers move (iterate.py) and the task that steps them (task.py). Imports from
runner/ (device, optim, claims_expr) and from nothing else in tasks/.
"""
