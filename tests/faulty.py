"""A classifier that raises at a chosen step, to test how the runner records a failed run.

Used from the CLI: `task._target_=tests.faulty.FailingClassifier +task.fail_at=5`.
"""

from __future__ import annotations

from tasks.classifier import Classifier


class FailingClassifier(Classifier):
    def __init__(self, *args, fail_at: int = 5, **kwargs):
        super().__init__(*args, **kwargs)
        self.fail_at, self.steps_done = fail_at, 0

    def train_step(self, opt, measure):
        self.steps_done += 1
        if self.steps_done == self.fail_at:
            raise RuntimeError(f"boom at step {self.fail_at}\nsecond line of the message")
        return super().train_step(opt, measure)
