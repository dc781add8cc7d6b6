"""What the run, sweeps, reports and claims all read or write, below all of them: strict JSON
(`strict_json`), a run folder's files read as untrusted input (`runfiles`, `schema` for
summary.json, `records` for metrics.jsonl), the safe expressions of claims and of a task's
theory step sizes (`expr`: parsed, never eval'd) and the console helpers (`console`).

Imports nothing else of runner, and no torch."""
