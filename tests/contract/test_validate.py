"""Config validation: every config in every group composes and its values meet their rules; bad
values are reported all at once with key, value and what is allowed.

`test_every_number_of_every_option_has_a_rule_that_refuses_bad_values` walks every YAML file of
conf/ (the groups are its folders): a new file, or a new number in one, is checked without an
edit here, and a number without a rule (declared in a `{...}` comment or derived from its name)
fails it.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import ValidationError

from runner.__main__ import CONF_DIR
from runner.validation.rules import Rule, RuleError, derived, parse
from runner.validation.sources import declared, search_dirs, syntax_errors
from runner.validation.validate import ConfigError, problems, validate
from tests.helpers import MODELS, OPTIMS, SCHEDS, TASKS, compose_cfg

CONF = Path(CONF_DIR)
# Read by others before any job: Python's logging (dictConfig checks its schema), the Optuna plugin.
NOT_OURS = {"hydra/job_logging": "logging's own schema", "hydra/sweeper/optuna_lr": "the Optuna sweeper's own"}


def choices(cfg) -> dict:
    return dict(cfg.hydra.runtime.choices)


@functools.cache
def task_config(task: str):
    return compose_cfg(f"task={task}")


def a_task_for(model: str) -> str:
    return next(t for t in TASKS if model in task_config(t).task.models)


@pytest.mark.parametrize("overrides", [*([f"task={t}"] for t in TASKS), *([f"optim={o}"] for o in OPTIMS),
                                       *([f"model={m}", f"task={a_task_for(m)}"] for m in MODELS),
                                       *([f"sched={s}"] for s in SCHEDS), ["logger=none"]])
def test_every_shipped_config_is_valid(overrides):
    cfg = compose_cfg(*overrides)
    validate(cfg, choices(cfg))


def test_every_value_problem_is_reported_together():
    cfg = compose_cfg("optim=muon", "optim.lr=0", "optim.aux.lr=-3", "precision=fp16", "eval_every=-1",
                      "task.epochs=5", "task.steps=7.5", "metrics.fit_tail=0", "logger.mode=sometimes",
                      "+sched.T_maxx=3", "sched=cosine", "device=tpu", "seed=-1", "model.hidden=[64,0]")
    with pytest.raises(ConfigError) as err:
        validate(cfg, choices(cfg))
    found = err.value.problems
    assert found == problems(cfg, choices(cfg))  # the first pass: nothing imported
    for needle in ("optim.lr=0: must be a finite number > 0", "optim.aux.lr=-3: must be a finite number > 0",
                   "precision='fp16': allowed: auto, fp32, bf16, fp64", "eval_every=-1: must be an integer >= 1",
                   "task.steps=7.5: must be an integer >= 1 or null", "metrics.fit_tail=0: must be a number in (0, 1]",
                   "logger.mode='sometimes': allowed: online, offline, disabled",
                   "device='tpu': unknown device; allowed: auto, cpu, cuda, cuda:N",
                   "seed=-1: must be an integer in [0, 2**64)", "model.hidden=[64, 0]: must be a list of integers >= 1"):
        assert sum(p.startswith(needle) for p in found) == 1, (needle, found)
    assert len(found) == 10, found


def test_class_and_task_problems_are_reported_together_once_the_values_pass():
    cfg = compose_cfg("task.epochs=5", "task.steps=7", "+sched.T_maxx=3", "sched=cosine", "task.batch_size=5000")
    assert problems(cfg, choices(cfg)) == []
    with pytest.raises(ConfigError) as err:
        validate(cfg, choices(cfg))
    assert err.value.problems == [
        "sched.T_maxx: not an argument of torch.optim.lr_scheduler.CosineAnnealingLR; allowed: T_max, eta_min, last_epoch",
        "task.epochs=5, task.steps=7: set exactly one budget",
        "task.batch_size=5000: larger than the training set (1437); use at most 1437 (= full-batch gradient descent)"]


def test_a_model_that_does_not_fit_the_task_names_those_that_do():
    cfg = compose_cfg("model=resnet18")
    with open_dict(cfg):
        cfg.task.models = ["mlp", "cnn"]
    with pytest.raises(ConfigError, match="model=resnet18: does not fit task=digits; models that fit: mlp, cnn"):
        validate(cfg, choices(cfg))


def test_cuda_asked_for_where_there_is_none():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = compose_cfg("device=cuda")
    with pytest.raises(ConfigError, match="no CUDA device is visible; use device=auto or device=cpu"):
        validate(cfg, choices(cfg))


def test_unknown_task_argument_is_caught():
    cfg = compose_cfg("+task.batchsize=32")
    with pytest.raises(ConfigError, match="task.batchsize: not an argument of tasks.classifier.task.Classifier"):
        validate(cfg, choices(cfg))


# --- the rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize("text, good, bad", [
    ("int >= 1", [1, 7, 2**70], [0, -1, 1.0, 1.5, True, "1", None, math.inf]),
    ("float > 0", [1, 1e-300, 1e300, 10**300], [0, -1e-9, math.inf, math.nan, False, "0.1", [0.1], 10**400]),
    ("float in (0, 1)", [0.5, 1e-9], [0, 1, 1.0, -0.5, math.nan]),
    ("float in [0, 1]", [0, 1, 0.5], [-1e-12, 1.0000001]),
    ("int in [0, 2**64)", [0, 2**64 - 1], [-1, 2**64]),
    ("float > 0 or null", [None, 2.5], [0, "null"]),
    ("int >= 1 or list of int >= 1", [4, [4, 8], []], [0, [4, 0], [4.0], "4", {"a": 4}]),
    ("2 x float in [0, 1)", [[0.9, 0.99], [0, 0]], [[0.9], [0.9, 0.9, 0.9], [0.9, 1.0], 0.9]),
    ("map of list of float", [{"eval/acc": [0.9]}, {}], [{"eval/acc": [math.nan]}, {"x": 0.9}, [0.9]]),
    ("bool", [True, False], [0, 1, "true", None]),
])
def test_a_rule_admits_what_it_says_and_nothing_else(text, good, bad):
    rules = parse(text)
    assert all(any(r.admits(v) for r in rules) for v in good), good
    assert not [v for v in bad if any(r.admits(v) for r in rules)]


def test_a_rule_that_does_not_parse_is_an_error_naming_the_file_and_line(tmp_path):
    (tmp_path / "optim").mkdir()
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    (tmp_path / "optim" / "odd.yaml").write_text("lr: 0.1\nsteps: 3   # {int >= one}\n")
    with pytest.raises(RuleError, match=r"odd.yaml, line 2: \{int >= one\} is not a rule"):
        declared({"optim": "odd"}, [tmp_path])


def test_a_yaml_syntax_error_or_a_key_given_twice_is_one_line_with_file_line_and_column(tmp_path):
    (tmp_path / "a.yaml").write_text("lr: [0.1\nmomentum: 0.9\n")
    (tmp_path / "b.yaml").write_text("lr: 0.1\nlr: 0.2\n")
    (tmp_path / "good.yaml").write_text("lr: 0.1\n")
    assert syntax_errors([tmp_path]) == [
        f"{tmp_path / 'a.yaml'}, line 2, column 9: did not find expected ',' or ']' "
        f"(while parsing a flow sequence at line 1, column 5)",
        f"{tmp_path / 'b.yaml'}, line 2, column 1: duplicate key 'lr' (first at line 1)"]
    assert syntax_errors([CONF]) == []


# --- every number of every option ----------------------------------------------------------------


def option_files() -> list[str]:
    files = [p.relative_to(CONF).with_suffix("").as_posix() for p in sorted(CONF.rglob("*.yaml"))]
    return [f for f in files if "/" in f and not any(f.startswith(skip) for skip in NOT_OURS)] + ["config"]


def overrides_for(option: str) -> list[str]:
    """Compose the option; a model on a task it fits, a sampler on the task whose defaults pick one."""
    group, _, name = option.rpartition("/")
    if not group:
        return []
    if group == "model":
        return [f"model={name}", f"task={a_task_for(name)}"]
    if group == "sampler":
        return [f"task={next(t for t in TASKS if task_config(t).get('sampler') is not None)}", f"sampler={name}"]
    return [f"{group}={name}"]


def numbers(tree, prefix: str, declared_here: set[str]) -> list[str]:
    """Dotted keys of the file's numbers (and lists of them), and of its nulls that declare a rule."""
    found = []
    for key, value in (tree or {}).items():
        path = f"{prefix}{key}"
        if key == "defaults":
            continue
        if isinstance(value, dict):
            found += [path] if path in declared_here else numbers(value, f"{path}.", declared_here)
        elif path in declared_here or (_numeric(value) and not isinstance(value, bool)):
            found.append(path)
    return found


def _numeric(v) -> bool:
    return isinstance(v, (int, float)) or (isinstance(v, list) and bool(v) and all(_numeric(x) for x in v))


def bad_values(rules: tuple[Rule, ...]) -> list:
    """Values none of the alternatives admits: nan, inf, a string, a fraction for an int, each bound
    crossed, a list of the wrong length or with a bad element."""
    candidates = [math.nan, math.inf, -math.inf, "big", True]
    for r in rules:
        candidates += _outside(r)
    return [v for v in candidates if not any(r.admits(v) for r in rules)]


def _outside(r: Rule) -> list:
    if r.kind in ("int", "float"):
        crossed = [r.lo if r.lo_open else r.lo - 1] if r.lo is not None else []
        crossed += [r.hi if r.hi_open else r.hi + 1] if r.hi is not None else []
        return crossed + ([1.5, 2.0] if r.kind == "int" else [])
    if r.kind == "list":
        n = r.length or 1
        return [[x] * n for x in _outside(r.item) + [math.nan]] + ([[0.5] * (n - 1)] if r.length else [])
    return [{"x": x} for x in _outside(r.item) + [math.nan]] if r.kind == "map" else []


@pytest.mark.parametrize("option", option_files())
def test_every_number_of_every_option_has_a_rule_that_refuses_bad_values(option):
    path = CONF / f"{option}.yaml"
    text = path.read_text()
    group = option.rpartition("/")[0]
    cfg = compose_cfg(*overrides_for(option))
    package = "" if "@package _global_" in text or not group else group.replace("/", ".") + "."
    table = declared(choices(cfg), search_dirs(OmegaConf.to_container(cfg.hydra.runtime.config_sources)))
    keys = numbers(OmegaConf.to_container(OmegaConf.create(text)), package, set(table))  # YAML as Hydra reads it
    raw = OmegaConf.to_container(cfg, resolve=False)
    for key in keys:
        rules = table.get(key) or (parse(derived(key.rsplit(".", 1)[-1])) if derived(key.rsplit(".", 1)[-1]) else None)
        assert rules is not None, f"{path}: {key} is a number without a rule: declare one, e.g. `# {{int >= 1}}`"
        assert bad_values(rules), key
        for bad in bad_values(rules):
            try:
                OmegaConf.update(cfg, key, bad, merge=False)
            except ValidationError as e:  # a typed node (Hydra's launcher schemas): Hydra refuses it, naming it
                assert f"full_key: {key}" in str(e)
                continue
            found = problems(cfg, choices(cfg))
            assert [p for p in found if p.startswith(f"{key}={bad!r}: must be ")], (key, bad, found)
        OmegaConf.update(cfg, key, _at(raw, key), merge=False)
    assert problems(cfg, choices(cfg)) == []


def _at(tree: dict, key: str):
    for part in key.split("."):
        tree = tree[part]
    return tree


@pytest.mark.parametrize("launcher", ["basic", "lanes"])
def test_a_sweeps_jobs_skip_the_first_pass_the_sweep_ran_on_them(launcher, tmp_path, capsys, monkeypatch):
    """The sweep checks every job before launch (hydra_plugins/runner_sweeper); its jobs skip that
    pass, once each, and only while it runs; a job the sweep could not check checks itself."""
    import runner.validation.validate as validation
    from hydra_plugins.runner_sweeper import covering_sweeper
    from tests.helpers import run_main

    calls = []
    real = validation.problems
    monkeypatch.setattr(validation, "problems", lambda *a, **k: calls.append(1) or real(*a, **k))
    real_jobs = covering_sweeper.job_problems
    monkeypatch.setattr(covering_sweeper, "job_problems",
                        lambda *a: (real_jobs(*a)[0], {1}))  # as if the check of job 1 had raised
    code, out = run_main(capsys, "-m", "task=gan", "task.steps=20", "seed=0,1,2", "logger=none",
                         f"hydra.sweep.dir={tmp_path}", *(["hydra/launcher=lanes"] if launcher == "lanes" else []))
    assert code == 0, out
    # the sweep's three, then job 1's own (twice through the basic launcher: the app's check, then its run's)
    assert len(calls) == 3 + (1 if launcher == "lanes" else 2)
    assert validation.SWEEP_CHECKED == set()
    assert all((tmp_path / str(k) / "summary.json").is_file() for k in range(3))
