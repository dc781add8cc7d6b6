"""Tasks: one module per kind of problem; each class is built from `conf/task/<name>.yaml`."""
