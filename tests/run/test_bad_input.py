"""Bad input through the real entry point (issue 12, "Bad input"): each mistake is refused before
any work, naming the key, the value found and what is allowed, with exit status 1, and nothing
is created beyond Hydra's own record of the run (`.hydra/`, `runner.log`): no summary, no
metrics, no wandb run, no data folder. A sweep is refused before its first job, with nothing
created at all. Every other number of every config file: tests/contract/test_validate.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_main

HYDRA_OWN = {".hydra", "runner.log"}
ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
REINFORCE = ["task=gridworld", "task.method=reinforce", "model=mlp", "optim.lr=0.1"]


def refused(capsys, monkeypatch, tmp_path: Path, *args: str) -> str:
    """Run `runner ARGS` in this process; assert it was refused with nothing run; return its output."""
    monkeypatch.setattr(sys, "stderr", sys.stdout)  # Hydra reports its own errors on stderr
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "run"
    code, out = run_main(capsys, *args, f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert code == 1, out
    assert "Traceback" not in out, out
    assert not run_dir.exists() or {p.name for p in run_dir.iterdir()} <= HYDRA_OWN, list(run_dir.iterdir())
    assert not (tmp_path / "sweep").exists(), out
    return out


@pytest.mark.parametrize("args, message", [
    (["optim.lr=inf"], "optim.lr=inf: must be a finite number > 0"),
    (["optim.lr=1e400"], "optim.lr=inf: must be a finite number > 0 (a number beyond ±1.8e308, such as 1e400, reads as inf)"),
    (["task=gan", "task.steps=50.7"], "task.steps=50.7: must be an integer >= 1"),
    (["task=gan", "task.steps=50.0"], "task.steps=50.0: must be an integer >= 1 (write 50: 50.0 is a float"),
    (["task=gan", "task.d_steps=1.5"], "task.d_steps=1.5: must be an integer >= 1"),
    ([*REINFORCE, "task.batch_size=0"], "task.batch_size=0: must be an integer >= 1 or null"),
    ([*REINFORCE, "task.horizon=-5"], "task.horizon=-5: must be an integer >= 1 or null"),
    (["metrics.diverge_factor=-1"], "metrics.diverge_factor=-1: must be a finite number >= 1"),
    (["seed=99999999999999999999"], "seed=99999999999999999999: must be an integer in [0, 2**64)"),
    (["seed=18446744073709551616"], "seed=18446744073709551616: must be an integer in [0, 2**64)"),
    (["task.batch_size=big"], "task.batch_size='big': must be an integer >= 1"),
    (["optim.betas=[0.9]"], "optim.betas=[0.9]: must be a list of 2 numbers in [0, 1)"),
    (["model.hidden=[-5]"], "model.hidden=[-5]: must be a list of integers >= 1"),
    (["+optim.foo=nan"], "optim.foo=nan: must be finite"),
    (["optim=sgd", "+optim.momentun=0.9"], "optim.momentun: not an argument of torch.optim.SGD; allowed: lr, momentum"),
    (["task.epochs=5", "task.steps=7"], "task.epochs=5, task.steps=7: set exactly one budget"),
    (["task.loss=hinge"], "task.loss='hinge': allowed: cross_entropy, mse"),
    (["task=diffusion", "precision=fp64"], "precision=fp64: task=diffusion does not compute in float64"),
])
def test_a_bad_value_is_refused_before_any_work(args, message, capsys, monkeypatch, tmp_path):
    out = refused(capsys, monkeypatch, tmp_path, *args)
    assert "invalid config (nothing was run):" in out and f"  - {message}" in out, out


def test_the_largest_seed_torch_takes_runs(capsys, tmp_path):
    code, out = run_main(capsys, "seed=18446744073709551615", "task=gan", "task.steps=4", "logger=none",
                         f"hydra.run.dir={tmp_path}")
    assert code == 0, out


def test_data_dir_that_cannot_be_made_is_refused_and_one_made_for_a_failed_download_is_removed(
        capsys, monkeypatch, tmp_path, fake_no_download):
    (tmp_path / "a_file").write_text("")
    out = refused(capsys, monkeypatch, tmp_path, "task=mnist", f"data_dir={tmp_path / 'a_file' / 'x'}")
    assert f"data_dir={tmp_path / 'a_file' / 'x'}: cannot be created: {tmp_path / 'a_file'} is a file" in out
    missing = tmp_path / "nonexistent" / "x"  # creatable: the download is tried (and fails: no network here)
    code, out = run_main(capsys, "task=mnist", f"data_dir={missing}", "logger=none", f"hydra.run.dir={tmp_path / 'run2'}")
    assert code == 1 and fake_no_download, out
    assert f"{tmp_path / 'nonexistent'}, made for the download, was removed again" in out, out
    assert not (tmp_path / "nonexistent").exists()


def test_an_empty_sweep_is_an_error_naming_the_parameter(capsys, monkeypatch, tmp_path):
    out = refused(capsys, monkeypatch, tmp_path, "-m", "seed=range(0,0)", "logger=none")
    assert "seed=range(0,0) gives seed no value" in out, out


def test_every_job_of_a_sweep_is_checked_before_the_first_starts(capsys, monkeypatch, tmp_path):
    """A bad value in some jobs, and a task check that fails in others (it needs the task's own
    module): all reported, by job number, and no job runs."""
    out = refused(capsys, monkeypatch, tmp_path, "-m", "task=gan", "task.steps=4", "seed=0,1",
                  "optim.lr=0.1,-1", "task.scheme=simultaneous,extragradiant", "logger=none")
    assert "invalid config in 6 of 8 jobs (no job was run):" in out, out
    assert "  - optim.lr=-1: must be a finite number > 0 (jobs 2, 3, 6, 7)" in out, out
    assert "task.scheme='extragradiant': allowed: simultaneous, alternating, extragradient, optimistic (jobs 1, 5)" in out


def test_a_yaml_syntax_error_is_one_line_naming_file_line_and_column(tmp_path):
    (tmp_path / "optim").mkdir()
    (tmp_path / "optim" / "broken.yaml").write_text("_target_: torch.optim.SGD\nlr: [0.1\nmomentum: 0.9\n")
    proc = subprocess.run([sys.executable, "-m", "runner", "--config-dir", str(tmp_path), "optim=broken",
                           f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT, env=ENV, text=True, capture_output=True)
    assert proc.returncode == 1
    assert proc.stderr == (f"error: a config file is not valid YAML (nothing was run):\n  {tmp_path / 'optim' / 'broken.yaml'}, "
                           f"line 3, column 9: did not find expected ',' or ']' (while parsing a flow sequence at "
                           f"line 2, column 5)\n"), proc.stderr
    assert not (tmp_path / "run").exists()


def test_a_refusal_imports_no_torch(tmp_path):
    """Refused in about the time Hydra takes to compose: neither torch, nor a task, nor wandb is imported."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", "optim.lr=inf",
                           f"hydra.run.dir={tmp_path}"], cwd=ROOT, env=ENV, text=True, capture_output=True)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 1 and "optim.lr=inf: must be" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert not {m for m in imported if m.split(".")[0] in ("torch", "tasks", "wandb")}, sorted(imported)
    print(f"refused in {seconds:.2f} s")
