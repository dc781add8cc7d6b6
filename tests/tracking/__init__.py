"""Tests of runner/tracking: wandb without a network, and waits that may hang."""
