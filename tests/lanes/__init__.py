"""Tests of runner/lanes and the lanes launcher: a lanes sweep gives the records its basic-launcher sweep gives."""
