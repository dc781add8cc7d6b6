"""Lanes (README "Lanes", runner/lanes/): the same sweep through the basic launcher and through
`hydra/launcher=lanes` gives the same records and summaries (float64 tasks: to 1e-12 relative),
for task=objective and the bilinear and Dirac games; refused configs run one by one and say so; a
diverged lane ends alone; a lanes sweep rerun into its folder skips what finished. Checkpoints and
resume: test_lanes_resume.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from runner.run.metrics import read_records
from tests.helpers import run_main

RTOL = 1e-12
NOT_COMPARED = ("time_s", "time/elapsed_s", "time/step_s", "time/sample_s")  # the group's clock, not a lane's
SUMMARY_KEYS = ("status", "error", "steps", "final", "best", "convergence", "targets", "config_digest",
                "constants", "precision", "optimizer_split", "exit_code")


def close(a, b, where: str, scale: dict | None = None, key: str = "") -> None:
    """Equal to RTOL relative, of the value or of the metric's largest value in the run (`scale`):
    a metric that fell by decades (obj/subopt at 1e-10 of its start) is a difference of numbers of
    order 1, whose rounding (batched against single-run kernels, ~1e-16 of them) is relative to that."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for k in a:
            if k not in NOT_COMPARED and not k.endswith(("time_s", "conv/se")):
                close(a[k], b[k], f"{where}.{k}", scale, k if scale and k in scale else key)
    elif isinstance(a, float) and isinstance(b, float) and math.isfinite(a):
        size = max(abs(a), abs(b), (scale or {}).get(key, 0.0), 1e-300)
        assert abs(a - b) <= RTOL * size, f"{where}: {a!r} != {b!r}"
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{where}[{k}]", scale, key)
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), f"{where}: {a!r} != {b!r}"


def sweep(capsys, folder: Path, *args: str) -> tuple[int, str]:
    return run_main(capsys, "-m", *args, "logger=none", f"hydra.sweep.dir={folder}")


def hydra_file(job: Path, name: str, sweep_dir: Path) -> object:
    """A job's .hydra/ file as data, its sweep folder's path and the launcher's own entries left out
    (the one thing the two launchers' jobs legitimately differ in)."""
    data = yaml.safe_load((job / ".hydra" / name).read_text().replace(str(sweep_dir), "SWEEP"))
    if name == "hydra.yaml":
        hydra = data["hydra"]
        del hydra["launcher"], hydra["runtime"]["choices"]["hydra/launcher"]
        hydra["overrides"]["hydra"] = [o for o in hydra["overrides"]["hydra"] if not o.startswith("hydra/launcher=")]
    return data


def same_sweeps(capsys, tmp_path: Path, *args: str) -> str:
    """Run `args` through both launchers; assert equal records and summaries; return the lanes output."""
    code_b, _ = sweep(capsys, tmp_path / "basic", *args)
    code_l, out = sweep(capsys, tmp_path / "lanes", *args, "hydra/launcher=lanes")
    assert code_b == code_l == 0, out
    jobs = sorted(p.name for p in (tmp_path / "basic").iterdir() if p.name.isdigit())
    assert jobs == sorted(p.name for p in (tmp_path / "lanes").iterdir() if p.name.isdigit())
    for job in jobs:
        b, lanes = tmp_path / "basic" / job, tmp_path / "lanes" / job
        rb, rl = read_records(b / "metrics.jsonl"), read_records(lanes / "metrics.jsonl")
        assert [r["step"] for r in rb] == [r["step"] for r in rl], job
        scale = {k: max(abs(r[k]) for r in rb if k in r and math.isfinite(r[k])) for k in rb[0]}
        for x, y in zip(rb, rl):
            close(x, y, f"job {job} step {x['step']}", scale)
        sb, sl = (json.loads((d / "summary.json").read_text()) for d in (b, lanes))
        close({k: sb.get(k) for k in SUMMARY_KEYS}, {k: sl.get(k) for k in SUMMARY_KEYS}, f"job {job} summary", scale)
        for name in ("overrides.yaml", "config.yaml", "hydra.yaml"):  # composed once per group's choices
            assert hydra_file(lanes, name, tmp_path / "lanes") == hydra_file(b, name, tmp_path / "basic"), name
        assert (lanes / "runner.log").exists()
    return out


def float32_sweeps(capsys, tmp_path: Path, exact: str, *args: str) -> float:
    """Run `args` (4 jobs, float32) through both launchers; assert the same record keys, the same
    `exact` metric (a count: equal), status, steps and verdict; return the worst relative difference
    of the other values, for the caller's tolerance."""
    assert sweep(capsys, tmp_path / "basic", *args)[0] == 0
    code, out = sweep(capsys, tmp_path / "lanes", *args, "hydra/launcher=lanes")
    assert code == 0 and "4 jobs as one batched computation" in out, out
    worst = 0.0
    for job in "0123":
        b, lanes = (tmp_path / d / job for d in ("basic", "lanes"))
        rb, rl = read_records(b / "metrics.jsonl"), read_records(lanes / "metrics.jsonl")
        assert [r.keys() for r in rb] == [r.keys() for r in rl]
        for x, y in zip(rb, rl):
            assert x.get(exact) == y.get(exact)
            for k in x:
                if k not in NOT_COMPARED and isinstance(x[k], float) and math.isfinite(x[k]):
                    worst = max(worst, abs(x[k] - y[k]) / max(abs(x[k]), 1e-30))
        sb, sl = (json.loads((d / "summary.json").read_text()) for d in (b, lanes))
        assert (sb["status"], sb["steps"]) == (sl["status"], sl["steps"])
        assert sb["convergence"]["conv/kind"] == sl["convergence"]["conv/kind"], (sb["convergence"], sl["convergence"])
    return worst


@pytest.mark.parametrize("args", [
    ("problem=quadratic", "optim=sgd", "optim.lr=0.1,0.5"),
    ("problem=least_squares", "optim=momentum", "optim.lr=0.05,0.1", "optim.momentum=0.5,0.9"),
    ("problem=logistic", "optim=adam", "optim.lr=0.01,0.05"),
    ("problem=rosenbrock", "optim=adam", "optim.lr=0.01", "optim.betas=[0.9,0.999],[0.5,0.9]"),
    ("problem=reddi", "optim=adam", "optim.betas=[0.0,0.1]", "optim.lr=0.1,0.2"),
    ("problem=factorisation", "optim=sgd", "optim.lr=0.05,0.1"),
], ids=lambda a: a[0])
def test_objective_lanes_equal_single_runs(capsys, tmp_path, args):
    out = same_sweeps(capsys, tmp_path, "task=objective", "task.steps=60", "log_every=5", "seed=0,1", *args)
    assert "jobs as one batched computation" in out and "one by one" not in out


@pytest.mark.parametrize("game,scheme", [("bilinear", "simultaneous"), ("bilinear", "alternating"),
                                         ("bilinear", "extragradient"), ("bilinear", "optimistic"),
                                         ("dirac", "simultaneous"), ("dirac", "extragradient")])
def test_game_lanes_equal_single_runs(capsys, tmp_path, game, scheme):
    extra = ["task.loss=standard", "task.reg=r1", "task.gamma=0.1,0.3"] if game == "dirac" else ["task.dim=2"]
    out = same_sweeps(capsys, tmp_path, "task=gan", f"task.game={game}", f"task.scheme={scheme}", "task.steps=120",
                      "log_every=10", "task.jacobian_every=40", "seed=0,1", "optim.lr=0.05,0.1", *extra)
    assert "as one batched computation" in out


def test_game_lanes_with_adam_two_time_scales_and_the_phase_plane(capsys, tmp_path):
    same_sweeps(capsys, tmp_path, "task=gan", "optim=adam", "task.steps=100", "log_every=10", "seed=0,1,2",
                "task.lr_ratio=1,2", "task.path_every=5")
    assert (tmp_path / "lanes" / "0" / "phase.png").exists()
    summaries = [json.loads((tmp_path / launcher / "0" / "summary.json").read_text()) for launcher in ("lanes", "basic")]
    assert summaries[0]["lanes"] == {"jobs": 6, "lane": 0} and "lanes" not in summaries[1]  # how the job ran


def test_refused_configs_run_one_by_one_and_say_why(capsys, tmp_path):
    code, out = sweep(capsys, tmp_path / "a", "task=objective", "task.steps=10", "optim=muon", "seed=0,1",
                      "hydra/launcher=lanes")
    assert code == 0 and "2 jobs run one by one: optim._target_=torch.optim.Muon: only elementwise" in out
    code, out = sweep(capsys, tmp_path / "c", "task=objective", "task.steps=10", "problem.dim=5,10",
                      "hydra/launcher=lanes")
    assert code == 0 and out.count("1 job run one by one: a group of one") == 2
    assert all(json.loads((tmp_path / "c" / j / "summary.json").read_text())["status"] == "completed" for j in "01")


def test_a_diverged_lane_ends_alone_as_its_single_run_and_a_rerun_skips_what_finished(capsys, tmp_path):
    args = ("task=objective", "task.steps=200", "log_every=10", "optim.lr=0.5,2.5", "seed=0,1")
    same_sweeps(capsys, tmp_path, *args)  # the diverged lanes' records and summaries too
    lanes = tmp_path / "lanes"
    status = {j: json.loads((lanes / j / "summary.json").read_text())["status"] for j in "0123"}
    assert status == {"0": "completed", "1": "completed", "2": "diverged", "3": "diverged"}
    assert read_records(lanes / "0" / "metrics.jsonl")[-1]["step"] == 200
    code, out = sweep(capsys, lanes, *args, "hydra/launcher=lanes")
    assert code == 0 and out.count("skipped: this config already finished") == 4, out


def test_a_failed_group_runs_its_jobs_one_by_one_and_keeps_what_the_lanes_wrote(capsys, tmp_path, monkeypatch):
    """The batched computation raises after training (records written, no summary yet): the jobs
    run again one by one, each from step 0, and give the single runs' results; the records the
    lanes had written are set aside, not overwritten."""
    from tasks.gan.lanes import GameLanes

    def broken(self):
        raise RuntimeError("unstack broke")

    monkeypatch.setattr(GameLanes, "unstack", broken)
    out = same_sweeps(capsys, tmp_path, "task=gan", "task.steps=40", "log_every=10", "seed=0,1")
    assert "lanes: the batched computation failed (RuntimeError: unstack broke); its 2 jobs run one by one" in out
    for job in ("0", "1"):
        kept = list((tmp_path / "lanes" / job).glob("metrics.jsonl.replaced-*"))
        assert len(kept) == 1 and len(read_records(kept[0])) == 4, kept


def test_a_stop_signal_during_a_lane_group_ends_every_lane_interrupted_with_its_checkpoint(tmp_path):
    import signal
    import time

    from tests.faulty import Child

    child = Child(["-m", "task=gan", "task.steps=100000000", "log_every=100", "logger=none", "seed=0,1,2",
                   "hydra/launcher=lanes", f"hydra.sweep.dir={tmp_path}"], tmp_path / "sweep.out")
    child.wait_for("jobs as one batched computation")
    deadline = time.time() + 60
    while not all((tmp_path / j / "metrics.jsonl").exists() and read_records(tmp_path / j / "metrics.jsonl")
                  for j in "012"):
        assert time.time() < deadline, child.output()
        time.sleep(0.2)
    child.signal(signal.SIGINT)
    code, out = child.join(), child.output()
    assert code == 130, out
    for job in "012":
        s = json.loads((tmp_path / job / "summary.json").read_text())
        assert (s["status"], s["exit_code"], s["resumable"]) == ("interrupted", 130, True), s
        assert s["error"].startswith("stopped by SIGINT at step ") and (tmp_path / job / "checkpoint.pt").exists()
        assert s["steps"] > 0 and read_records(tmp_path / job / "metrics.jsonl"), s
    assert "sweep: 3 jobs" in out, out


@pytest.mark.parametrize("args", [
    ("optim=sgd", "optim.lr=10,30"),
    ("task.method=npg", "task.tau=0.01,0.05", "optim.lr=0.05,0.1"),
    ("optim=adam", "optim.lr=0.01,0.1", "task.init=random", "task.init_scale=0.5,2"),
    ("task.env=FrozenLake8x8-v1", "+task.env_kwargs.is_slippery=false", "task.gamma=0.9,0.95", "optim=momentum",
     "optim.lr=5,10"),
    ("task.env=CliffWalking-v1", "task.gamma=0.9", "task.init=random", "task.init_scale=0.5,2", "optim.lr=1"),
    ("task.env=runner/GridWorld-v0", "+task.env_kwargs={rows:3,cols:4,walls:[[1,1]],slip:0.1,step_reward:-0.01}",
     "task.rho=env", "task.tau=0,0.02", "optim.lr=3"),
    ("task.method=reinforce", "task.batch_size=4", "task.horizon=30", "task.tau=0,0.01", "optim.lr=0.5"),
], ids=["pg-sgd", "npg-tau", "pg-adam-random", "8x8-gamma-momentum", "cliff-pg-random", "own-grid", "reinforce"])
def test_gridworld_lanes_equal_single_runs(capsys, tmp_path, args):
    out = same_sweeps(capsys, tmp_path, "task=gridworld", "task.steps=60", "log_every=5", "seed=0,1", *args)
    assert "jobs as one batched computation" in out and "one by one" not in out
    assert (tmp_path / "lanes" / "0" / "policy.png").exists()


def test_gridworld_with_a_network_runs_one_by_one_and_says_why(capsys, tmp_path):
    code, out = sweep(capsys, tmp_path, "task=gridworld", "model=mlp", "task.steps=5", "optim.lr=0.1", "seed=0,1",
                      "hydra/launcher=lanes")
    assert code == 0 and "2 jobs run one by one: model=mlp: only model=tabular is batched over lanes" in out, out
