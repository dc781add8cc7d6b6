"""Lanes (README "Lanes"): the jobs of a sweep whose configs differ only in lane-safe keys run as
lanes of one batched computation, each job keeping its own folder, records and summary. Which jobs
group and why others do not (`group`), one lane's start and end through the run's own machinery
(`lane`), the optimizers that never mix lanes (`optim`), the batched step loop (`loop`) and a
group from start to end, with its fallback to one job at a time (`group_run`). The Hydra launcher
that calls these is hydra_plugins/runner_lanes/.

May import runner.run, runner.task, runner.resume, runner.tracking, runner.validation and runner.common."""
