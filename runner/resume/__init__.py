"""What lets a run stop at any instant and start again where it was: checkpoints (`checkpoint`,
what a checkpoint file may hold in `checkpoint_format`, the RNGs in `rng`), stop signals (`stops`),
one process per run folder (`lock`) and files set aside instead of overwritten (`aside`).

Imports runner.common only."""
