"""Classifiers that misbehave on purpose, for tests of how the runner records a run's ending:
one that raises at a chosen step, one that pauses at every step (so a signal sent from outside
lands mid-run on any machine).

Used from the CLI: `task._target_=tests.faulty.FailingClassifier +task.fail_at=5`,
`task._target_=tests.faulty.SlowClassifier +task.pause_s=0.002`.
"""

from __future__ import annotations

import time

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


class SlowClassifier(Classifier):
    def __init__(self, *args, pause_s: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.pause_s = pause_s

    def train_step(self, opt, measure):
        time.sleep(self.pause_s)
        return super().train_step(opt, measure)
