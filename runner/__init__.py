"""runner: a config-driven runner for optimisation-convergence experiments.

`runner` (the console script) and `python -m runner` are the Hydra app in `runner.__main__`;
`python -m runner.bench` is the benchmark. The task owns its algorithm (tasks/); this package owns
everything cross-cutting, in layers that import only downwards:

    claims/      runner-claim: theorems as tests        (runs sweeps through the app)
    report/      runner-report: figures and tables      (reads run folders, runs nothing)
    lanes/       a sweep's jobs as one batched computation (the launcher: hydra_plugins/)
    sweep/       the end of a sweep                     (the covering sweeper: hydra_plugins/)
    run/         one run, start to finish
    resume/ tracking/ validation/    checkpoints and stop signals; wandb; the config's checks
    task/        the contract with a task, and all a task may import of the runner
    common/      the run folder's files and the console, shared by all of the above
"""
