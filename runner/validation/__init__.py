"""Checking a config before any work starts, every problem at once, each naming the key, the value
found and what is allowed: `validate` (the two passes), `rules` (the `{...}` rule a YAML comment
declares), `sources` (the YAML files of the search path and their rules), `classes` (the second
pass, against the real constructors), `extras` (optional installs a choice needs).

Imports runner.task.protocol only (ConfigError, the contract's); torch only in the second pass
(`classes`)."""
