"""Tests of one run (runner/run, runner/task): the command line, devices and precision, the
terminal, the run folder's records, memory, bad input, weight decay, sharpness and the verdict."""
