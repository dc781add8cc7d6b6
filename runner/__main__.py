"""The `runner` command (and `python -m runner`): a Hydra app over `conf/`.

    runner                                   # default experiment (digits, offline, CPU)
    runner task=cifar optim=muon
    runner -m task=digits optim=sgd,adam,muon seed=0,1,2

Exit status: 0 when every run completed or diverged (a result), 1 when one failed or its
config was invalid, 130 on Ctrl-C.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

# conf/ sits beside the package in a clone and in an editable install.
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
_exit_codes: list[int] = []


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def app(cfg: DictConfig) -> None:
    from runner.run import run  # imported here so `runner --help` stays fast

    _exit_codes.append(run(cfg))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(max(_exit_codes, default=0))


if __name__ == "__main__":
    main()
