"""Tests of the task families (tasks/): each family's algorithm against known answers."""
