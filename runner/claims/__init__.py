"""`runner-claim` (`__main__`): theorems as tests. A claim file's schema (`spec`; its expressions
are runner.common.expr's), the checks before anything runs (`check`), the claim's sweep through
the runner's own entry point (`jobs`), measuring and judging each setting (`measure`), and its
table and claim.json (`table`). The claim files themselves are the top-level package `claims/`.

May import the runner app (runner.__main__), runner.sweep, runner.run and runner.common."""
