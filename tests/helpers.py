"""Shared helpers for the tests: compose the real config, build a task and its optimizers."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from runner.__main__ import CONF_DIR
from runner.run import build
from runner.task.device import Runtime

ROOT = Path(__file__).resolve().parent.parent
TASKS = sorted(p.stem for p in (ROOT / "conf/task").glob("*.yaml"))
OPTIMS = sorted(p.stem for p in (ROOT / "conf/optim").glob("*.yaml"))
MODELS = sorted(p.stem for p in (ROOT / "conf/model").glob("*.yaml"))
SCHEDS = sorted(p.stem for p in (ROOT / "conf/sched").glob("*.yaml"))


def data_dir_for(task: str, request) -> list[str]:
    """Tasks with a torchvision dataset read the fake files of the fixture named after it
    (tests/conftest.py: `fake_mnist`, `fake_cifar10`, ...)."""
    from hydra.utils import get_method

    cfg = compose_cfg(f"task={task}")
    if "dataset" not in cfg.task or get_method(cfg.task.dataset._target_).__name__ == "digits":
        return []
    fake = request.getfixturevalue(f"fake_{get_method(cfg.task.dataset._target_).__name__}")
    return [f"data_dir={fake.root}"]


def tiny_budget(task_cfg: DictConfig) -> list[str]:
    """Overrides that make a run of this task a few steps long (read from the keys its config has)."""
    if "train_steps" in task_cfg:  # a sampling task: `steps` is its grid of sampler step counts
        return ["task.train_steps=6", "task.steps=[2,4]", "task.samples=200", "task.ot_samples=100"]
    if "epochs" in task_cfg:
        return ["task.steps=6", "task.epochs=null", "task.batch_size=8"]
    return ["task.steps=6"]  # 6: one-cycle's two phases need a step each


def run_main(capsys, *args: str) -> tuple[int, str]:
    """`runner ARGS` through the console script's own function, in this process (torch is imported
    already: seconds faster than a subprocess). Returns the exit code and what it printed."""
    import sys

    from hydra.core.global_hydra import GlobalHydra

    import runner.__main__ as cli
    import runner.sweep.summary as sweep

    GlobalHydra.instance().clear()
    cli._exit_codes.clear()
    sweep.exit_code = None
    argv, sys.argv = sys.argv, ["runner", *args]
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code or 0
    finally:
        sys.argv = argv
    return code, capsys.readouterr().out


def compose_cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def build_all(cfg: DictConfig):
    """(task, optimizer sets, runtime) exactly as the runner builds them."""
    rt = Runtime.from_config(cfg.device, cfg.precision, cfg.compile)
    task = build.task(cfg, rt)
    with open_dict(cfg):
        cfg.total_steps = task.total_steps
    return task, build.optimizers(cfg, task), rt


def signal_mid_run(args: list[str], run_dir: Path, signum: int, env: dict, records: int = 3) -> tuple[int, str]:
    """Start `runner ARGS` in a subprocess, send it `signum` once `records` metric records are
    written in `run_dir`; return its exit code and output."""
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= records):
        time.sleep(0.05)
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out
