"""Where metrics go besides the run folder: wandb or nowhere (`tracker`), with the network check
(`network`) and the limits on waits that may hang (`deadline`).

Imports nothing else of runner."""
