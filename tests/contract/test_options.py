"""Every option of every config group through the real entry point (`runner.__main__.main`, the
console script's function, in this process), a few steps each.

The groups are the folders of `conf/`, and the options of each are what Hydra lists for it, the
installed plugins' included (joblib, submitit, Optuna): a new YAML file in any group is run here
without an edit. A task runs with every model that fits it; an option of another group runs on
the first task whose defaults select that group (a sampler on `diffusion`), else on the default
task; an experiment runs as a one-job sweep, a launcher and a sweeper a two-job sweep. The
SLURM launchers go through submitit's real SLURM executor, with `tests/fake_slurm.py` standing in
for `sbatch`, `srun` and `sacct`.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from runner.__main__ import CONF_DIR
from runner.common.schema import FINISHED
from runner.run.metrics import read_records
from tests import fake_slurm
from tests.helpers import compose_cfg, data_dir_for, run_main, tiny_budget

CONF = Path(CONF_DIR)
GROUPS = sorted({p.parent.relative_to(CONF).as_posix() for p in CONF.rglob("*.yaml") if p.parent != CONF})
OWN_TESTS = ("task", "model", "experiment", "hydra/launcher", "hydra/sweeper")  # groups with a test of their own
TASK_SPECIFIC = {("gan", "mlp"): ["task.game=mog", "task.eval_samples=200", "task.w2_samples=100"]}  # mlp players: the 2-D GAN
TINY_SWEEP = ("task=gan", "task.steps=30", "log_every=10", "seed=0,1", "logger=none")


def options(group: str) -> list[str]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        found = GlobalHydra.instance().config_loader().get_group_options(group)
    GlobalHydra.instance().clear()
    return found


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@functools.cache
def task_config(task: str | None = None):
    """The composed config of `task=TASK` (None: the defaults); composing costs ~0.5 s."""
    return compose_cfg(*([f"task={task}"] if task else []))


def task_pairs() -> list[tuple[str, str]]:
    return [(task, model) for task in options("task") for model in task_config(task).task.models]


@functools.cache
def host_task(group: str) -> str:
    """The first task whose own defaults select an option of `group`, else the default task."""
    key = group.replace("/", ".")
    for task in options("task"):
        if task_config(task).get(key) is not None and task_config().get(key) is None:
            return task
    return task_config().hydra.runtime.choices.task


def group_options() -> list[tuple[str, str]]:
    return [(g, o) for g in GROUPS if g not in OWN_TESTS for o in options(g)]


def test_the_groups_found_are_the_ones_users_choose_from():
    assert {"task", "model", "optim", "sched", "sampler", "logger", "experiment", "hydra/launcher",
            "hydra/sweeper"} <= set(GROUPS), GROUPS
    assert {"basic", "joblib", "submitit_local", "slurm"} <= set(options("hydra/launcher"))
    assert {"basic", "covering", "optuna_lr"} <= set(options("hydra/sweeper"))


@pytest.mark.parametrize(("task", "model"), task_pairs())
def test_every_task_with_every_model_that_fits_it(task, model, tmp_path, request):
    base = [f"task={task}", f"model={model}", *TASK_SPECIFIC.get((task, model), [])]
    cfg = compose_cfg(*base)
    code, out = run_main(request.getfixturevalue("capsys"), *base, *tiny_budget(cfg.task), "log_every=2",
                         "eval_every=2", "logger=none", *data_dir_for(task, request), f"hydra.run.dir={tmp_path}")
    s = summary(tmp_path)
    assert code == 0 and s["status"] == "completed", (s["error"], out)
    assert s["final"][s["convergence"]["conv/metric"]] >= 0


@pytest.mark.parametrize(("group", "option"), group_options())
def test_every_option_of_every_other_group(group, option, tmp_path, request, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    task = host_task(group)
    cfg = task_config(task)
    logger = [] if group == "logger" else ["logger=none"]
    code, out = run_main(request.getfixturevalue("capsys"), f"task={task}", f"{group}={option}",
                         *tiny_budget(cfg.task), "log_every=1", "eval_every=2", *logger,
                         *data_dir_for(task, request), f"hydra.run.dir={tmp_path}")
    s = summary(tmp_path)
    assert code == 0 and s["status"] == "completed", (s["error"], out)
    records = read_records(tmp_path / "metrics.jsonl")
    assert records, out
    if group == "sched":  # every schedule but `constant` moves the learning rate within the run
        lrs = [r["train/lr"] for r in records if "train/lr" in r]
        assert (len(set(lrs)) == 1) == (option == "constant"), lrs
    if group == "logger":
        assert any((tmp_path / "wandb").glob("offline-run-*")) == (option == "wandb")


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_runs_as_a_sweep(experiment, tmp_path, capsys):
    """One job per preset: the first value of each key it sweeps (the values themselves are task
    and group options, run above)."""
    cfg = compose_cfg(f"experiment={experiment}")
    first = [f"{key}={str(values).split(',')[0]}" for key, values in (cfg.hydra.sweeper.params or {}).items()]
    code, out = run_main(capsys, "-m", f"experiment={experiment}", "hydra.sweeper.params=null", *first,
                         *tiny_budget(cfg.task), "log_every=2", "eval_every=100",  # one evaluation, at the end
                         f"hydra.sweep.dir={tmp_path}")
    jobs = sorted(p.parent.parent for p in tmp_path.glob("*/.hydra/overrides.yaml"))
    assert code == 0 and len(jobs) == 1, out
    assert summary(jobs[0])["status"] in FINISHED, out


def test_an_experiment_is_chosen_with_or_without_a_plus(capsys):
    outputs = [run_main(capsys, f"{plus}experiment=gridworld_pg_npg", "--cfg", "job") for plus in ("", "+")]
    assert outputs[0] == outputs[1] and outputs[0][0] == 0
    assert "method: pg" in outputs[0][1] and "steps: 2000" in outputs[0][1]


@pytest.mark.parametrize("launcher", options("hydra/launcher"))
def test_every_launcher_runs_a_two_job_sweep(launcher, tmp_path, capsys, monkeypatch):
    extra = {"joblib": ["hydra.launcher.n_jobs=2"]}.get(launcher, [])
    if "slurm" in launcher:
        states = fake_slurm.install(tmp_path / "bin")
        monkeypatch.setenv("PATH", f"{states.parent}:{os.environ['PATH']}")
    code, out = run_main(capsys, "-m", f"hydra/launcher={launcher}", *extra, *TINY_SWEEP,
                         f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert code == 0, out
    assert [summary(tmp_path / "sweep" / job)["status"] for job in ("0", "1")] == ["completed", "completed"]
    if launcher == "slurm":  # the preset's resources reach the submission script
        script = next((tmp_path / "sweep" / ".submitit").glob("*/*_submission.sh")).read_text()
        for line in ("#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=8", "#SBATCH --signal=USR2@120",
                     "#SBATCH --array=0-1%2"):  # array_parallelism 64, at most the jobs there are
            assert line in script, script


@pytest.mark.filterwarnings("ignore:The ``declarative_base")  # optuna<3 (pinned by the plugin) on SQLAlchemy 2
@pytest.mark.parametrize("sweeper", options("hydra/sweeper"))
def test_every_sweeper_runs_a_two_job_sweep(sweeper, tmp_path, capsys):
    search = {"optuna": ["hydra.sweeper.n_trials=2", "optim.lr=interval(0.01,0.1)"],
              "optuna_lr": ["hydra.sweeper.n_trials=2"]}.get(sweeper, [])
    code, out = run_main(capsys, "-m", f"hydra/sweeper={sweeper}", *TINY_SWEEP, *search,
                         f"hydra.sweep.dir={tmp_path}")
    assert code == 0, out
    jobs = sorted(p.parent.parent for p in tmp_path.glob("*/.hydra/overrides.yaml"))
    assert len(jobs) == 2 and all(summary(job)["status"] == "completed" for job in jobs), out


def test_a_one_cycle_schedule_too_short_for_its_two_phases_is_refused_with_the_fix(tmp_path, capsys):
    code, out = run_main(capsys, "sched=onecycle", "task.steps=4", "task.epochs=null", "logger=none",
                         f"hydra.run.dir={tmp_path}")
    assert code == 1 and "sched.pct_start=0.25: a one-cycle run of 4 steps needs" in out, out
    assert not (tmp_path / "metrics.jsonl").exists()
