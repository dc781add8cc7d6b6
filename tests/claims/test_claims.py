"""Claims (runner/claims*.py, claims/*.yaml): the safe expression evaluator, the validation of claim
files, the measurement and verdict on runs whose answer is known, and `runner-claim` end to end
through the real runner on claims that take seconds, including one that is false and must fail.

    pytest tests/claims/test_claims.py              # ~30 s on a CPU core
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

import runner.claims.__main__ as cli
from runner.claims.check import problems
from runner.common.expr import ExprError, parse
from runner.claims.jobs import find_jobs, hydra_value, job_overrides, parsed
from runner.claims.measure import Row, judge
from runner.claims.spec import ClaimError, discover, load

SHIPPED = discover(cli.claims_dir())
CONFIG = {"optim": {"lr": 0.1}, "task": {"sv_min": 0.5, "sv_max": 2.0, "gamma": 0.3, "steps": [4, 8, 16]},
          "final": {"gan/jac_max_abs": 0.5}}


# --- the evaluator -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, value", [
    ("sqrt(1 + optim.lr**2 * task.sv_max**2)", math.sqrt(1.04)),
    ("(task.gamma + sqrt(task.gamma**2 - 1)) / 2 if task.gamma > 1 else 0.5", 0.5),
    ("max(abs(1 - optim.lr), min(task.sv_min, 3)) + task.steps[-1]", 16.9),
    ("final['gan/jac_max_abs'] * 2 + pi - pi", 1.0),
    ("1 < task.gamma < 1 or not task.gamma", False),
])
def test_evaluator_computes_from_the_config(text, value):
    assert parse(text).evaluate(CONFIG) == pytest.approx(value, rel=1e-15)


@pytest.mark.parametrize("text, needle", [
    ("__import__('os').system('echo x')", "not allowed"),
    ("open('/etc/passwd')", "calling 'open' is not allowed; allowed functions: sqrt"),
    ("eval('1 + 1')", "calling 'eval'"),
    ("getattr(optim, 'lr')", "calling 'getattr'"),
    ("optim.lr.hex()", "calling 'optim.lr.hex'"),
    ("(lambda: 1)()", "calling 'lambda: 1' is not allowed"),
    ("lambda: 1", "Lambda is not allowed"),
    ("[x for x in task.steps]", "ListComp is not allowed"),
    ("{'a': 1}['a']", "Dict is not allowed"),
    ("f'{optim}'", "JoinedStr is not allowed"),
    ("(x := 1)", "NamedExpr is not allowed"),
    ("import os", "not a valid expression"),
    ("optim.__class__", "no dunder names"),
    ("().__class__.__bases__", "not allowed"),
    ("sqrt(x=4)", "positional arguments only"),
    ("task.steps[task.sv_min]", "a subscript must be a constant"),
    ("...", "not allowed"),
    ("", "non-empty"),
])
def test_evaluator_refuses_anything_but_a_formula(text, needle):
    with pytest.raises(ExprError) as err:
        parse(text)
    assert needle in str(err.value), str(err.value)


@pytest.mark.parametrize("text, needle", [
    ("optim.lr.real", "no such key"),            # attributes exist only as keys of the config's dicts
    ("optim.momentum", "no such key; its keys: lr"),
    ("nosuch + 1", "unknown name"),
    ("'ab' * 1000000000", "is not a number"),    # no string arithmetic (nor memory bombs)
    ("10 ** 10 ** 10", "OverflowError"),         # floats only: overflows at once, no huge integers
    ("sqrt(-optim.lr)", "math domain error"),
    ("max(task.steps)", "is not a number"),
])
def test_evaluation_refuses_what_the_config_does_not_hold(text, needle):
    with pytest.raises(ExprError) as err:
        parse(text).evaluate(CONFIG)
    assert needle in str(err.value), str(err.value)


# --- claim files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_claim_validates_against_the_config(path):
    claim = load(path)
    assert problems([claim]) == []
    assert claim.source and claim.statement and claim.settings()


GOOD = {"name": "c", "statement": "s", "source": "a paper", "fast": True,
        "experiment": {"task": "gan", "overrides": {"task.game": "bilinear", "task.steps": 200}},
        "sweep": {"optim.lr": [0.1, 0.2]}, "measure": "conv/rate", "predict": "sqrt(1 + optim.lr**2)",
        "relation": "==", "tolerance": {"abs": 1e-4, "reason": "why"}}


def write_claim(folder: Path, name: str = "c", **changes) -> Path:
    raw = {**GOOD, "name": name, **changes}
    raw = {k: v for k, v in raw.items() if v is not None}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize("changes, needles", [
    ({"predicted": "1"}, ["predicted='1'", "unknown key; allowed: name, statement"]),
    ({"measure": "conv/rat"}, ["measure='conv/rat'", "unknown measure; allowed: conv/(rate|exponent|order)"]),
    ({"predict": "os.system('ls')"}, ["predict=\"os.system('ls')\"", "allowed functions: sqrt"]),
    ({"predict": "sqrt(1 + __builtins__)"}, ["no dunder names"]),
    ({"relation": "~="}, ["relation='~='", "allowed for measure conv/rate: ==, <=, >=, <, >"]),
    ({"tolerance": None}, ["tolerance=None", "required for == on a number"]),
    ({"tolerance": {"rel": 0.1}}, ["tolerance.reason=None", "say why"]),
    ({"tolerance": {"abs": -1, "reason": "x"}}, ["tolerance.abs=-1", "finite number >= 0"]),
    ({"measure": "conv/kind", "predict": "spiral", "tolerance": None},
     ["predict='spiral'", "one of linear, sublinear"]),
    ({"name": "other"}, ["name='other'", "the file's name"]),
    ({"sweep": {"optim.lr": 0.1}}, ["sweep.optim.lr=0.1", "non-empty list"]),
    ({"reference": {"task.method": "npg"}}, ["reference=", "sweep keys"]),
    ({"predict": "reference + 1"}, ["uses `reference`"]),
    ({"experiment": {"task": "gan", "overrides": {"logger": "wandb"}}},
     ["experiment.overrides.logger", "set by the claim"]),
    ({"fast": "yes"}, ["fast='yes'", "true or false"]),
])
def test_a_bad_claim_file_is_refused_naming_file_key_value_and_what_is_allowed(tmp_path, changes, needles):
    path = write_claim(tmp_path, "c", **{k: v for k, v in changes.items() if k != "name"})
    if "name" in changes:
        path.write_text(path.read_text().replace("name: c", f"name: {changes['name']}"))
    with pytest.raises(ClaimError) as err:
        load(path)
    assert len(err.value.problems) == 1, err.value.problems
    for needle in [str(path), *needles]:
        assert needle in err.value.problems[0], (needle, err.value.problems)


@pytest.mark.parametrize("changes, needles", [
    ({"predict": "sqrt(1 + optim.lrr)"}, ["'optim.lrr': no such key; its keys:", "(setting optim.lr=0.1)"]),
    ({"predict": "sqrt(1 + nosuch.lr)"}, ["unknown name 'nosuch'", "names: "]),
    ({"predict": "sqrt(0.15 - optim.lr)"}, ["math domain error", "(setting optim.lr=0.2)"]),
    ({"experiment": {"task": "gan", "overrides": {"task.gamme": 1}}}, ["task.gamme", "experiment/sweep"]),
    ({"predict": "task.game"}, ["gives 'bilinear', not a number"]),
])
def test_a_claim_that_does_not_fit_the_config_is_refused_before_anything_runs(tmp_path, changes, needles):
    found = problems([load(write_claim(tmp_path, **changes))])
    assert len(found) == 1, found
    for needle in needles:
        assert needle in found[0], (needle, found)


def test_an_invalid_claim_stops_the_command_before_any_run(tmp_path, capsys):
    bad = write_claim(tmp_path, "bad", measure="conv/rat")
    with pytest.raises(SystemExit) as ex:
        cli.main([str(bad), "--out", str(tmp_path / "out")])
    assert ex.value.code == 2
    out = capsys.readouterr().out
    assert "invalid claim (nothing was run)" in out and "conv/rat" in out
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", [0.1, 1e-05, 3, True, None, "bilinear", "runner/GridWorld-v0", "a b's", [4, 8],
                                   {"rows": 2, "slip": 0.1}])
def test_values_reach_hydra_as_written(value):
    assert parsed([f"k={hydra_value(value)}"])["k"] == value


# --- measurement and verdict on runs with a known answer -----------------------------------------


def fake_run(sweep: Path, job: int, claim, setting: dict, convergence: dict, final: dict | None = None,
             status: str = "completed") -> Path:
    """A job folder as the runner leaves it: overrides, resolved config and summary."""
    run = sweep / str(job)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*job_overrides(claim, setting), "logger=none"]))
    config = {"optim": {"lr": setting.get("optim.lr", 0.1)}, "task": {"sv_max": 1.0, "steps": 200}}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    summary = {"status": status, "error": None, "steps": 200, "final": final or {}, "best": {},
               "convergence": convergence}
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_verdicts_on_known_summaries(tmp_path):
    claim = load(write_claim(tmp_path, sweep={"optim.lr": [0.1, 0.2, 0.3, 0.4]}))
    sweep = tmp_path / "sweep"
    exact = math.sqrt(1.01)
    fake_run(sweep, 0, claim, {"optim.lr": 0.1}, {"conv/kind": "diverging", "conv/rate": exact + 5e-5,
                                                   "conv/rate_ci": [exact, exact + 1e-4]})
    fake_run(sweep, 1, claim, {"optim.lr": 0.2}, {"conv/kind": "diverging", "conv/rate": 1.03,
                                                   "conv/rate_ci": [1.029, 1.031]})
    fake_run(sweep, 2, claim, {"optim.lr": 0.3}, {"conv/kind": "none", "conv/rate": None, "conv/rate_ci": None,
                                                   "conv/reason": "none: 6 points, 8 needed"})
    fake_run(sweep, 3, claim, {"optim.lr": 0.4}, {"conv/kind": "linear", "conv/rate": 1.0770})  # no interval
    stale = fake_run(sweep, 4, claim, {"optim.lr": 0.1}, {"conv/rate": exact, "conv/rate_ci": [exact, exact]})
    (stale / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(  # an earlier version of the claim: 100 steps
        [o.replace("task.steps=200", "task.steps=100") for o in job_overrides(claim, {"optim.lr": 0.1})]))
    rows = cli.rows_of(claim, sweep)
    assert [r.verdict for r in rows] == ["PASS", "FAIL", "FAIL", "FAIL"]
    assert rows[0].predicted == pytest.approx(exact) and rows[0].ci == [exact, exact + 1e-4]
    assert "measured 1.03 vs predicted == 1.0198" in rows[1].reason
    assert "conv/kind=none" in rows[2].reason and "6 points, 8 needed" in rows[2].reason
    assert "no interval" in rows[3].reason
    assert [len(r.runs) for r in rows] == [1, 1, 1, 1]  # job 4 (another version of the claim) is left out
    record = cli.record(claim, rows, sweep, wall=1.0)
    on_disk = json.loads((sweep / "claim.json").read_text())
    assert on_disk == json.loads(json.dumps(record))
    assert {"name", "source", "measure", "relation", "rows"} <= set(on_disk)
    assert set(on_disk["rows"][0]) >= {"setting", "predicted", "measured", "ci", "verdict", "runs"}
    assert on_disk["rows"][0]["setting"] == {"optim.lr": 0.1} and on_disk["rows"][2]["measured"] is None


def test_steps_to_a_threshold_never_reached_count_as_more_than_any_budget(tmp_path):
    claim = load(write_claim(tmp_path, sweep={"task.method": ["pg", "npg"]}, reference={"task.method": "npg"},
                             measure="conv/steps_to_0.01", predict="reference", relation=">", tolerance=None))
    sweep = tmp_path / "sweep"
    fake_run(sweep, 0, claim, {"task.method": "pg"}, {"conv/steps_to_0.01": None})
    fake_run(sweep, 1, claim, {"task.method": "npg"}, {"conv/steps_to_0.01": 30})
    rows = cli.rows_of(claim, sweep)
    pg = next(r for r in rows if not r.reference)
    assert (pg.verdict, pg.measured, pg.predicted) == ("PASS", math.inf, 30.0)
    assert "never reached in 200 steps" in pg.reason


def test_pooled_seeds_make_one_row_that_passes_only_if_every_run_does(tmp_path):
    claim = load(write_claim(tmp_path, sweep={"optim.lr": [0.1], "seed": [0, 1, 2]}, pool=["seed"]))
    exact, sweep = math.sqrt(1.01), tmp_path / "sweep"
    for seed, (rate, lo, hi) in enumerate([(exact, exact - 1e-5, exact + 1e-5), (exact + 2e-5, exact, exact + 3e-5),
                                           (exact + 9e-4, exact + 8e-4, exact + 1e-3)]):
        fake_run(sweep, seed, claim, {"optim.lr": 0.1, "seed": seed},
                 {"conv/kind": "diverging", "conv/rate": rate, "conv/rate_ci": [lo, hi]})
    (row,) = cli.rows_of(claim, sweep)
    assert row.setting == {"optim.lr": 0.1} and len(row.runs) == 3
    assert row.measured == pytest.approx(exact + 2e-5) and row.ci == pytest.approx([exact - 1e-5, exact + 1e-3])
    assert row.verdict == "FAIL" and "(1 of 3 runs)" in row.reason  # seed 2 is 9e-4 off, beyond 1e-4


def test_a_failed_run_fails_its_row_saying_why(tmp_path):
    claim = load(write_claim(tmp_path, sweep={"optim.lr": [0.1]}))
    fake_run(tmp_path / "sweep", 0, claim, {"optim.lr": 0.1}, {}, status="failed")
    row = judge(claim, Row({"optim.lr": 0.1}, find_jobs(claim, tmp_path / "sweep")[0]))
    assert row.verdict == "FAIL" and "run failed" in row.reason


# --- the command, end to end through the runner --------------------------------------------------

QUICK = ["bilinear_simultaneous_gda", "dirac_simultaneous_rate", "npg_entropy_local_rate"]


def run_cli(*args: str) -> int:
    try:
        cli.main(list(args))
    except SystemExit as e:
        return e.code or 0
    return 0


def test_quick_claims_pass_through_the_real_runner(tmp_path, capsys):
    assert run_cli(*QUICK, "--out", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "3 of 3 claims pass" in out
    for name in QUICK:
        record = json.loads((tmp_path / name / "claim.json").read_text())
        assert record["rows"] and all(r["verdict"] == "PASS" for r in record["rows"]), record["rows"]
        for row in record["rows"]:
            assert isinstance(row["predicted"], float) and isinstance(row["measured"], float)
            assert row["ci"][0] <= row["measured"] <= row["ci"][1]
            assert all((tmp_path / name / run / "summary.json").exists() for run in row["runs"])
    # A rerun measures again without running: the runner skips every finished job.
    assert run_cli(QUICK[0], "--out", str(tmp_path)) == 0
    assert "skipped: this config already finished" in (tmp_path / QUICK[0] / "runner.out").read_text()


def test_a_false_claim_fails_with_exit_code_1(tmp_path, capsys):
    # Extragradient contracts on a bilinear game; claiming that it expands like simultaneous GDA is false.
    false = write_claim(tmp_path, "extragradient_expands", experiment={"task": "gan", "overrides": {
        "task.game": "bilinear", "task.scheme": "extragradient", "task.steps": 400, "log_every": 2}},
        sweep={"optim.lr": [0.2]})
    assert run_cli(str(false), "--out", str(tmp_path / "out")) == 1
    record = json.loads((tmp_path / "out" / "extragradient_expands" / "claim.json").read_text())
    (row,) = record["rows"]
    assert row["verdict"] == "FAIL" and row["measured"] < 1 < row["predicted"], row
    assert "0 of 1 claims pass" in capsys.readouterr().out


def test_list_names_every_shipped_claim(capsys):
    assert run_cli("--list") == 0
    out = capsys.readouterr().out
    assert all(p.stem in out for p in SHIPPED)


def test_every_fast_claim_passes(tmp_path, capsys):
    assert run_cli("--fast", "--out", str(tmp_path)) == 0, capsys.readouterr().out[-3000:]
    assert {p.name for p in tmp_path.iterdir()} == {c.stem for c in SHIPPED if load(c).fast}
