"""Tests of runner/resume: checkpoints, stop signals at every stage and a run's folder after a fault."""
