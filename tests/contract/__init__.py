"""The contract suites, each over a whole folder or file: every option of every config group through
the real entry point (test_options), every task (test_tasks), every optimizer config
(test_optim), every YAML rule (test_validate), every README command (test_readme), the built
wheel outside the checkout (test_install) and the layout's import rules (test_layout)."""
