"""Claims: theorems as tests. Each YAML file here is one claim (an experiment, the values it
sweeps, what is measured, what theory predicts, with its tolerance and source); `runner-claim`
finds them by globbing this folder, runs them through the runner and prints PASS or FAIL per
setting. The schema is in runner/claims/spec.py. This package holds data only and imports nothing.
"""
