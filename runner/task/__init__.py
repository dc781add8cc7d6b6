"""The task's side of the contract: what a task is (`protocol`) and what it may use of the runner:
the device, precision and threads (`device`), optimizer sets (`optim`), which weight decays are
gradient terms (`decay`), the convergence fit (`convergence`), `sharpness`, a task's own random streams (`rng`) and
what a task needs to run as lanes (`lanes`).

A task (tasks/) imports the runner only from here and from runner.common. Imports nothing
else of runner."""
