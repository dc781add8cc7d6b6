"""Every `runner` command in README.md's code blocks, through the real entry point in this
process, as written but for its budget: the task's training budget is cut to a few steps and a
sweep runs without wandb (MNIST and CIFAR read small files in
torchvision's formats, as there is no download here). Commands run
in a temporary working folder, so their relative run folders (`outputs/...`) land there.

Left out, each for a reason of its own: `logger.mode=online` needs an account and the network;
the SLURM line needs real CIFAR files in the job's own process (a test's fake files cannot match
torchvision's checksums there); the presets (`experiment=NAME`) run in tests/contract/test_options.py, as
does the SLURM launcher. The lanes-on-SLURM line (`hydra/launcher=lanes_slurm`) runs here, with
tests/fake_slurm.py standing in for SLURM's commands.
"""

from __future__ import annotations

import os
import re
import shlex

import pytest

from tests import fake_slurm
from tests.helpers import ROOT, compose_cfg, data_dir_for, run_main, tiny_budget

NOT_HERE = ("logger.mode=online", "hydra/launcher=slurm", "experiment=")
BUDGET = ("task.steps", "task.epochs", "task.train_steps", "hydra.sweeper.n_trials", "logger")


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    lines = [re.split(r"\s+#\s", line)[0].strip() for block in blocks for line in block.splitlines()]
    return list(dict.fromkeys(line for line in lines if line.startswith("runner ") or line == "runner"))


def as_run_here(command: str, request: pytest.FixtureRequest) -> list[str]:
    """The command's arguments, its budget cut (a key it sets itself gets the short value)."""
    args = shlex.split(command.split(" | ")[0])[1:]
    if any(a.startswith("--") for a in args):  # --help, --cfg: nothing is run
        return args
    composed = compose_cfg(*[a for a in args if a.startswith(("task=", "hydra/sweeper="))])
    task = composed.hydra.runtime.choices.task
    short = {o.split("=", 1)[0]: o for o in [*tiny_budget(composed.task), "log_every=2", "eval_every=100"]}
    if "n_trials" in composed.hydra.sweeper:
        short["hydra.sweeper.n_trials"] = "hydra.sweeper.n_trials=2"
    if "-m" in args:  # a sweep: no wandb run per job (tests/sweep/test_sweep.py has those)
        short["logger"] = "logger=none"
    own = {a.split("=", 1)[0] for a in args}
    short = {k: o for k, o in short.items() if k in BUDGET or k not in own}  # its own values but the budget
    kept = [a for a in args if a.split("=", 1)[0] not in short]
    return [*kept, *short.values(), *data_dir_for(task, request)]


# Muon on fastnet costs ~30 s on a CPU (bfloat16 orthogonalisation): tests/contract/test_tasks.py runs that
# composition in CI; this one is a long test.
LONG = ("runner task=cifar optim=muon",)


@pytest.mark.filterwarnings("ignore:The ``declarative_base")  # optuna<3 (pinned by the plugin) on SQLAlchemy 2
@pytest.mark.parametrize("command", [pytest.param(c, marks=pytest.mark.slow) if c in LONG else c
                                     for c in readme_commands() if not any(n in c for n in NOT_HERE)])
def test_every_readme_command_runs(command, tmp_path, monkeypatch, request):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    args = as_run_here(command, request)
    if "hydra/launcher=lanes_slurm" in command:
        states = fake_slurm.install(tmp_path / "bin")
        monkeypatch.setenv("PATH", f"{states.parent}:{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    code, out = run_main(request.getfixturevalue("capsys"), *args)
    assert code == 0, (args, out)
    assert "Traceback" not in out and "Error" not in out.replace("error: null", ""), out


def test_the_readme_is_read_and_its_commands_found():
    commands = readme_commands()
    assert "runner" in commands and "runner task=mnist optim=adam model=cnn sched=cosine" in commands
    assert len(commands) > 25, commands
