"""Sweeps as a user runs them (`runner -m ...` in a subprocess): the end-of-sweep table and exit
status, skip-completed, checkpoints and exact resume, wandb runs per job, the joblib and submitit
launchers, the Optuna preset and the wandb-sweep command line."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

import runner.__main__ as cli
from hydra_plugins.runner_sweeper.covering_sweeper import covering
from runner.resume import checkpoint
from runner.run.job import seed_everything
from runner.run.loop import train
from runner.run.metrics import read_records, write_json_atomic
import runner.sweep.summary as sweep
from runner.task.device import auto_device, pick_device
from tests.helpers import ROOT, build_all, compose_cfg, signal_mid_run

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
TINY = ("task=gan", "task.steps=30", "log_every=10")  # a job of a few milliseconds


def runner(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, env=env or ENV, text=True,
                          capture_output=True, timeout=timeout)


def runner_here(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """`runner ARGS` in this process (torch is imported already: seconds faster than a subprocess)."""
    GlobalHydra.instance().clear()
    cli._exit_codes.clear()
    sweep.exit_code = None
    argv, sys.argv = sys.argv, ["runner", *args]
    try:
        cli.main()
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = argv
    return code, capsys.readouterr().out


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_failed_job_does_not_stop_the_sweep_table_lists_every_job_and_exit_is_nonzero(tmp_path, capsys):
    code, out = runner_here(capsys, "-m", "task._target_=tests.faulty.FailingClassifier", "task.epochs=null", "task.steps=25",
                  "+task.fail_at=30,5", "optim=sgd", "optim.lr=0.1,1e9", "logger=none", f"hydra.sweep.dir={tmp_path}")
    assert code == 1, out
    statuses = [summary(tmp_path / str(i))["status"] for i in range(4)]
    assert statuses == ["completed", "diverged", "failed", "failed"], statuses
    table = out[out.index("sweep: 4 jobs"):]
    for needle in ("+task.fail_at=30 optim.lr=0.1", "+task.fail_at=5", "optim.lr=1000000000.0", "completed", "diverged",
                   "RuntimeError: boom at step 5", "train/grad_norm", "eval/acc", "every job:",
                   "2 of 4 jobs did not finish: 2 (failed), 3 (failed)", f"sweep folder: {tmp_path}"):
        assert needle in table, (needle, table)



def test_rerun_skips_finished_jobs_wherever_they_lie_and_reruns_the_rest(tmp_path, capsys):
    args = ("-m", *TINY, "logger=none", f"hydra.sweep.dir={tmp_path}")
    assert runner_here(capsys, *args, "optim.lr=0.1,1e9")[0] == 0
    first = [summary(tmp_path / str(i)) for i in range(2)]
    assert [s["status"] for s in first] == ["completed", "diverged"]
    (tmp_path / "1" / "summary.json").unlink()  # as if job 1 had been killed before writing it

    # Values reordered: job numbers swap. lr=0.1 (now job 1) finished earlier (in folder 0): skipped
    # and its run moved home; lr=1e9 (now job 0) left no summary: run again.
    code, out = runner_here(capsys, *args, "optim.lr=1e9,0.1")
    assert code == 0, out
    assert out.count("skipped: this config already finished") == 1
    now = [summary(tmp_path / str(i)) for i in range(2)]
    assert [s["status"] for s in now] == ["diverged", "completed"]
    assert now[1]["config_digest"] == first[0]["config_digest"] and now[1]["final"] == first[0]["final"]
    assert now[0]["config_digest"] == first[1]["config_digest"]
    assert now[1]["run_dir"] == str(tmp_path / "1")
    assert "completed (earlier)" in out and "diverged (earlier)" not in out

    # Everything finished: nothing runs; rerun=true runs the jobs it names again.
    code, out = runner_here(capsys, *args, "optim.lr=1e9,0.1")
    assert code == 0 and out.count("skipped:") == 2, out
    mtime = (tmp_path / "1" / "metrics.jsonl").stat().st_mtime_ns
    code, out = runner_here(capsys, *args, "optim.lr=1e9,0.1", "rerun=true")
    assert code == 0 and "skipped:" not in out
    assert (tmp_path / "1" / "metrics.jsonl").stat().st_mtime_ns > mtime


class _Stop(Exception):
    pass


def _train(cfg, tmp_path: Path, stop_at: int | None = None, state: dict | None = None) -> list[dict]:
    """The runner's loop on a freshly built task, stopped after step `stop_at` (checkpoint saved)
    or resumed from `state`; returns its records without the clock values."""
    seed_everything(cfg.seed if state is None else 12345)  # a resumed run must not depend on the seed state
    task, opts, rt = build_all(cfg)
    if state is not None:
        checkpoint.restore(state, task, opts)
    records: list[dict] = []

    def after_step(step: int) -> None:
        if step == stop_at:
            checkpoint.save(tmp_path, "digest", step, task, opts, None)
            raise _Stop

    try:
        train(task, opts, rt, lambda r: records.append({k: v for k, v in r.items() if "time" not in k}),
              log_every=3, eval_every=7, start=state["step"] if state else 0, after_step=after_step)
    except _Stop:
        pass
    return records


@pytest.mark.parametrize("overrides", [
    ("task.epochs=null", "task.steps=60", "task.batch_size=32", "optim=momentum", "sched=cosine"),  # epoch order
    ("task=gridworld", "task.method=reinforce", "task.steps=25", "task.batch_size=4", "task.horizon=20"),  # sampler
    ("optim=muon", "task.epochs=null", "task.steps=25", "model.hidden=[32,32,32]"),  # two optimizers, matrix views
])
def test_resumed_run_reproduces_the_uninterrupted_run_exactly(tmp_path, overrides):
    cfg = compose_cfg(*overrides, "device=cpu", "logger=none")
    straight = _train(cfg, tmp_path)
    first = _train(cfg, tmp_path, stop_at=16)
    state = checkpoint.load(tmp_path, "digest")
    assert state["step"] == 16 and first == straight[:len(first)]
    rest = _train(cfg, tmp_path, state=state)
    assert first + rest == straight


def test_ctrl_c_stops_a_sweep_and_still_shows_its_table(tmp_path):
    args = ["-m", "task._target_=tests.faulty.SlowClassifier", "+task.pause_s=0.002", "task.epochs=null",
            "task.steps=100000", "task.batch_size=32", "model.hidden=[64]", "seed=0,1", "logger=none",
            f"hydra.sweep.dir={tmp_path}"]
    code, out = signal_mid_run(args, tmp_path / "0", signal.SIGINT, ENV)
    assert code == 130, out
    assert summary(tmp_path / "0")["status"] == "interrupted" and not (tmp_path / "1").exists()  # job 1 never ran
    assert "sweep: 1 job" in out and "interrupted" in out and f"sweep folder: {tmp_path}" in out


def test_sigterm_saves_a_checkpoint_and_the_next_start_resumes_it_in_the_same_wandb_run(tmp_path, capsys):
    args = ("task._target_=tests.faulty.SlowClassifier", "+task.pause_s=0.002", "task.epochs=null", "task.steps=300",
            "task.batch_size=32", "model.hidden=[64]", "checkpoint_every=50")
    run_dir = tmp_path / "run"
    code, out = signal_mid_run([*args, f"hydra.run.dir={run_dir}"], run_dir, signal.SIGTERM, ENV)
    assert code == 128 + signal.SIGTERM, out
    stopped = summary(run_dir)
    assert stopped["status"] == "interrupted" and stopped["error"].startswith("stopped by SIGTERM at step "), stopped
    step = int(stopped["error"].split("at step ")[1].split(";")[0])
    assert 60 <= step < 300 and (run_dir / "checkpoint.pt").exists()

    code, out = runner_here(capsys, *args, f"hydra.run.dir={run_dir}")
    assert code == 0, out
    assert f"resuming from the checkpoint at step {step}" in out
    done = summary(run_dir)
    assert done["status"] == "completed" and done["resumed_from"] == step and done["steps"] == 300
    assert done["wandb_id"] == stopped["wandb_id"]  # one wandb run, continued
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{done['wandb_id']}"))) == 2
    assert not (run_dir / "checkpoint.pt").exists()

    code, _ = runner_here(capsys, *args, "logger=none", f"hydra.run.dir={tmp_path / 'straight'}")
    assert code == 0
    resumed, straight = (read_records(d / "metrics.jsonl") for d in (run_dir, tmp_path / "straight"))
    assert [r["step"] for r in resumed] == list(range(20, 301, 20))  # no step twice
    without_time = lambda records: [{k: v for k, v in r.items() if "time" not in k} for r in records]  # noqa: E731
    assert without_time(resumed) == without_time(straight)
    assert done["final"] == summary(tmp_path / "straight")["final"]


def wandb_records(run_dir: Path) -> list[dict]:
    """The records of an offline wandb run, read back with wandb's own tool (no mock)."""
    proc = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_dir)],
                          text=True, capture_output=True, timeout=120, env=ENV)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_each_job_gets_its_own_finished_wandb_run_grouped_by_sweep_and_wandb_sync_finds_them(tmp_path, capsys):
    import wandb

    sweep_dir = tmp_path / "lr-study"
    code, out = runner_here(capsys, "-m", *TINY, "seed=0,1", "optim.lr=0.1", "logger.mode=offline",
                            f"hydra.sweep.dir={sweep_dir}")
    assert code == 0, out
    assert wandb.run is None  # the last job's run is finished too
    ids = set()
    for job, seed in (("0", 0), ("1", 1)):
        runs = list((sweep_dir / job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, runs
        records = wandb_records(runs[0])
        run = next(r["run"] for r in records if r["type"] == "run")
        assert run["run_group"] == "lr-study"
        assert run["display_name"] == "task=gan task.steps=30 log_every=10 optim.lr=0.1 logger.mode=offline"  # no seed
        assert run["config"]["update"]["seed"] == seed
        history = [r["history"]["item"] for r in records if r["type"] == "history"]
        assert [h["step"] for h in history if "gan/dist_to_eq" in h] == [10, 20, 30]  # its own records, none of the other job's
        assert records[-1]["type"] == "exit" and records[-1]["exit"]["exit_code"] == 0  # finished before the next
        ids.add(run["run_id"])
        assert summary(sweep_dir / job)["wandb_id"] == run["run_id"]
    assert len(ids) == 2

    # README: upload a whole offline sweep with one command; --dry-run lists what it would send.
    sync = subprocess.run(f"{sys.executable} -m wandb sync --dry-run {sweep_dir}/*/wandb/offline-run-*", shell=True,
                          text=True, capture_output=True, timeout=120, env=ENV)
    assert sync.returncode == 0, sync.stderr
    assert "Would sync 2 run(s)" in sync.stdout + sync.stderr, sync.stdout + sync.stderr


@pytest.mark.parametrize(("count", "job", "expected"), [
    (0, None, "cpu"), (0, 3, "cpu"), (1, None, "cuda"), (1, 5, "cuda"), (4, None, "cuda"),
    (4, 0, "cuda:0"), (4, 3, "cuda:3"), (4, 6, "cuda:2"), (3, 7, "cuda:1"),
])
def test_auto_device_gives_sweep_jobs_one_gpu_each(count, job, expected):
    assert auto_device(count, job) == expected


def test_a_device_set_by_name_is_kept_in_a_sweep():
    assert pick_device("cpu", job_num=3) == torch.device("cpu")


def test_joblib_runs_jobs_in_a_reused_worker_each_with_its_own_wandb_run(tmp_path, capsys):
    code, out = runner_here(capsys, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=1", *TINY, "seed=0,1",
                            "optim.lr=0.1,1e9", "logger.mode=offline", "logger.group=joblib-test",
                            f"hydra.sweep.dir={tmp_path}")
    assert code == 0, out
    assert "sweep: 4 jobs" in out
    pids, ids = set(), set()
    for job, (seed, status) in enumerate([(0, "completed"), (0, "diverged"), (1, "completed"), (1, "diverged")]):
        folder = tmp_path / str(job)
        assert summary(folder)["status"] == status
        (run_dir,) = (folder / "wandb").glob("offline-run-*")
        records = wandb_records(run_dir)
        run = next(r["run"] for r in records if r["type"] == "run")
        assert run["run_group"] == "joblib-test" and run["config"]["update"]["seed"] == seed
        assert records[-1]["type"] == "exit"
        ids.add(run["run_id"])
        pids.add((run_dir / "logs" / "debug.log").read_text().split("MainThread:")[1].split(" ")[0])
    assert len(ids) == 4 and len(pids) == 1  # four wandb runs, one worker process

    # Nothing carries over from one job to the next in a reused worker: the same results as
    # jobs run one by one in this process.
    code, _ = runner_here(capsys, "-m", *TINY, "seed=0,1", "optim.lr=0.1,1e9", "logger=none",
                          f"hydra.sweep.dir={tmp_path / 'basic'}")
    assert code == 0
    assert all(summary(tmp_path / str(job))["final"] == summary(tmp_path / "basic" / str(job))["final"]
               for job in range(4))


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_submitit_jobs_requeued_on_sigusr2_resume_from_their_checkpoint(tmp_path):
    """The SLURM preset's code path on submitit's local executor: each job runs in its own process
    under submitit's signal handling; SIGUSR2 (SLURM's preemption warning) makes it checkpoint,
    submitit requeues it, and the restarted job resumes in its folder."""
    args = ("-m", "hydra/launcher=submitit_local", "task._target_=tests.faulty.SlowClassifier", "+task.pause_s=0.01",
            "task.epochs=null", "task.steps=300", "task.batch_size=32", "model.hidden=[64]", "seed=0,1",
            "logger=none", f"hydra.sweep.dir={tmp_path}")
    proc = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=ROOT, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    files = [tmp_path / job / "metrics.jsonl" for job in ("0", "1")]
    deadline = time.time() + 180
    while time.time() < deadline and not all(f.exists() and len(f.read_text().splitlines()) >= 3 for f in files):
        time.sleep(0.05)
    controllers = [int(p.name) for p in (tmp_path / ".submitit").iterdir() if p.name.isdigit()]
    tasks = [child for pid in controllers for child in _children(pid)]
    assert len(tasks) == 2, (controllers, tasks)
    for pid in tasks:
        os.kill(pid, signal.SIGUSR2)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    for job in ("0", "1"):
        s = summary(tmp_path / job)
        assert s["status"] == "completed" and s["steps"] == 300 and s["resumed_from"] >= 60, s
        assert not (tmp_path / job / "checkpoint.pt").exists()
        steps = [r["step"] for r in read_records(tmp_path / job / "metrics.jsonl")]
        assert steps == list(range(20, 301, 20))
    assert "sweep: 2 jobs" in out and "Requeued" not in out


@pytest.mark.filterwarnings("ignore:The ``declarative_base")  # optuna<3 (pinned by the plugin) on SQLAlchemy 2
def test_optuna_preset_runs_a_study_where_diverged_trials_get_the_worst_value(tmp_path, capsys):
    code, out = runner_here(capsys, "-m", "hydra/sweeper=optuna_lr", "hydra.sweeper.n_trials=6", *TINY,
                            "optim.lr=tag(log,interval(1e-3,1e3))", "logger=none", f"hydra.sweep.dir={tmp_path}")
    assert code == 0, out
    summaries = [summary(tmp_path / str(i)) for i in range(6)]
    statuses = {s["status"] for s in summaries}
    assert statuses == {"completed", "diverged"}, statuses  # the range holds both kinds
    finals = [s["final"]["gan/dist_to_eq"] for s in summaries if s["status"] == "completed"]
    result = OmegaConf.load(tmp_path / "optimization_results.yaml")
    assert result.best_value == min(finals)  # the objective: final primary metric; diverged = +inf
    assert "sweep: 6 jobs" in out


def test_an_optuna_study_in_sqlite_continues_across_invocations(tmp_path, capsys):
    import optuna

    db = f"sqlite:///{tmp_path / 'study.db'}"
    for part in ("a", "b"):
        code, out = runner_here(capsys, "-m", "hydra/sweeper=optuna_lr", "hydra.sweeper.n_trials=2", *TINY,
                                f"hydra.sweeper.storage={db}", "hydra.sweeper.study_name=lr", "logger=none",
                                f"hydra.sweep.dir={tmp_path / part}")
        assert code == 0, out
    trials = optuna.load_study(study_name="lr", storage=db).trials
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)


def test_objective_is_the_worst_value_for_failed_diverged_or_missing_runs(tmp_path):
    write_json_atomic(tmp_path / "summary.json", {"status": "diverged", "final": {"a/x": 1.0},
                                                  "convergence": {"conv/metric": "a/x"}})
    assert sweep.objective(tmp_path, None, "final", minimize=True) == math.inf
    assert sweep.objective(tmp_path, "eval/acc", "final", minimize=False) == -math.inf
    assert sweep.objective(tmp_path / "nowhere", None, "final", minimize=True) == math.inf
    write_json_atomic(tmp_path / "summary.json", {"status": "completed", "final": {"a/x": 0.5, "eval/acc": 0.9},
                                                  "best": {"a/x": 0.25}, "convergence": {"conv/metric": "a/x"}})
    assert sweep.objective(tmp_path, None, "final", minimize=True) == 0.5
    assert sweep.objective(tmp_path, None, "best", minimize=True) == 0.25
    assert sweep.objective(tmp_path, "eval/acc", "final", minimize=False) == 0.9


def test_wandb_sweep_config_builds_a_command_that_hydra_parses():
    """The command line wandb's agent would build from conf/wandb_sweep.yaml, with wandb's own
    argument formatting, parses as Hydra overrides and sets the swept values."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    spec = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "wandb_sweep.yaml"))
    params = {"optim": {"value": "muon"}, "optim.lr": {"value": 0.00123}, "seed": {"value": 2}}
    assert set(params) == set(spec["parameters"])
    macros = {**create_sweep_command_args({"args": params}), "env": ["/usr/bin/env"], "program": [spec["program"]]}
    argv = [part for item in spec["command"]
            for part in (macros[item[2:-1]] if item.startswith("${") else [item])]
    assert argv[:2] == ["/usr/bin/env", "runner"]
    cfg = compose_cfg(*argv[2:])
    assert cfg.hydra.runtime.choices.optim == "muon" and cfg.optim.lr == 0.00123 and cfg.seed == 2
    assert cfg.logger.mode == "online"


def test_covering_check_composes_one_job_per_group_choice_and_key():
    batch = [["optim=sgd", "seed=0"], ["optim=sgd", "seed=1"], ["optim=adam", "seed=0"], ["optim=adam", "seed=1"],
             ["+optim@optim_discriminator=adam", "seed=2"]]
    groups = {"optim"}.__contains__
    assert covering(batch, groups) == [batch[0], batch[2], batch[4]]


def test_a_bad_group_choice_anywhere_in_a_sweep_stops_it_before_any_job_runs(tmp_path):
    proc = runner("-m", *TINY, "seed=0,1,2", "optim=sgd,adamm", "logger=none", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 1 and "adamm" in proc.stderr
    assert not any(p.is_dir() for p in tmp_path.iterdir())  # no job folder


def test_slurm_preset_takes_partition_and_account_from_the_environment(monkeypatch):
    monkeypatch.setenv("SBATCH_PARTITION", "gpu-long")
    monkeypatch.setenv("SBATCH_ACCOUNT", "proj42")
    launcher = compose_cfg("hydra/launcher=slurm").hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.account, launcher.qos) == ("gpu-long", "proj42", None)
    assert launcher.gpus_per_node == 1 and launcher.timeout_min == 240 and launcher.max_num_timeout > 0
    assert compose_cfg("hydra/launcher=slurm", "hydra.launcher.partition=debug").hydra.launcher.partition == "debug"


def test_sweep_keys_are_validated():
    from runner.validation.validate import ConfigError, validate

    cfg = compose_cfg("checkpoint_every=-5", "objective.use=last")
    with pytest.raises(ConfigError) as e:
        validate(cfg, cfg.hydra.runtime.choices)
    assert any(p.startswith("checkpoint_every=-5") for p in e.value.problems)
    assert any(p.startswith("objective.use='last': allowed: final, best") for p in e.value.problems)
