"""`runner-report --export`: run folders written here by hand (strict-JSON NaN and infinities,
metrics that some records lack, a config value that differs), exported, read back with pandas
and compared with the records as written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.report.test_report import report_cli

RECORDS = {  # seed -> records as the run would log them (None: not logged in that record)
    0: [{"step": 1, "time_s": 0.5, "train/loss": 2.0, "train/grad_evals": 2.0},
        {"step": 2, "time_s": 1.0, "train/loss": 1.0, "train/grad_evals": 4.0, "eval/acc": 0.5},
        {"step": 3, "time_s": 1.5, "train/loss": math.nan, "train/grad_evals": 6.0}],
    1: [{"step": 1, "time_s": 0.25, "train/loss": 3.0, "train/grad_evals": 2.0},
        {"step": 2, "time_s": 0.75, "train/loss": math.inf, "train/grad_evals": 4.0, "eval/acc": -math.inf}],
}


def strict(record: dict) -> dict:
    """As runner.common.strict_json writes a record: NaN and infinities null, named in "nonfinite"."""
    bad = {k: "nan" if math.isnan(v) else "inf" if v > 0 else "-inf" for k, v in record.items() if not math.isfinite(v)}
    return {**{k: None if k in bad else v for k, v in record.items()}, **({"nonfinite": bad} if bad else {})}


def write_run(folder: Path, seed: int, lr: float, records: list[dict]) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(f"optim:\n  lr: {lr}\n  name: sgd\nflag: true\nseed: {seed}\n")
    (folder / ".hydra" / "overrides.yaml").write_text(f"- optim.lr={lr}\n- seed={seed}\n")
    (folder / "metrics.jsonl").write_text("".join(json.dumps(strict(r)) + "\n" for r in records))
    last = records[-1]
    summary = {"status": "diverged" if not all(map(math.isfinite, last.values())) else "completed", "error": None,
               "steps": last["step"], "wall_time_s": last["time_s"], "final": {"train/loss": 1.5 + seed},
               "best": {"train/loss": 1.0}, "convergence": {"conv/metric": "train/loss", "conv/kind": "linear",
                                                             "conv/model": "exponential", "conv/rate": 0.9,
                                                             "conv/rate_ci": [0.8, 0.95], "conv/window": [1, 3],
                                                             "conv/points": 3, "conv/steps_to_0.1": None}}
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("export")
    for i, (seed, records) in enumerate(RECORDS.items()):
        write_run(root / "runs" / str(i), seed, 0.1, records)
    write_run(root / "runs" / "2", 0, 1, RECORDS[0][:2])  # another lr, an int in the config
    cli = report_cli(str(root / "runs"), "--out", str(root / "report"), "--export")
    assert cli.returncode == 0, cli.stdout
    return root, cli.stdout


def test_records_round_trip_through_pandas(exported):
    root, stdout = exported
    assert "records.parquet" in stdout
    df = pd.read_parquet(root / "report" / "records.parquet")
    assert list(df.columns) == ["run", "group", "seed", "step", "time_s", "grad_evals", "metric", "value", "optim.lr"]
    runs = {str(root / "runs" / str(i)): (seed, records, lr) for i, (seed, records, lr) in
            enumerate([(0, RECORDS[0], 0.1), (1, RECORDS[1], 0.1), (0, RECORDS[0][:2], 1.0)])}
    expected = sorted((run, seed, r["step"], r["time_s"], r["train/grad_evals"], k, v, lr)
                      for run, (seed, records, lr) in runs.items() for r in records
                      for k, v in r.items() if k not in ("step", "time_s", "train/grad_evals"))
    got = sorted(zip(df["run"].astype(str), df["seed"], df["step"], df["time_s"], df["grad_evals"],
                     df["metric"].astype(str), df["value"], df["optim.lr"]))
    assert len(got) == len(expected)  # eval/acc has rows only where it was logged
    for g, e in zip(got, expected):
        assert g[:6] == e[:6] and g[7] == e[7]
        assert g[6] == e[6] or (math.isnan(g[6]) and math.isnan(e[6])), (g, e)  # NaN and +-inf come back as logged
    assert df["step"].dtype == np.int64 and df["optim.lr"].dtype == np.float64 and df["seed"].dtype == np.int64
    assert "flag" not in df.columns and "optim.name" not in df.columns  # the same in every run
    assert set(df["group"].astype(str)) == {"lr=0.1", "lr=1"}


def test_summaries_one_row_per_run(exported):
    root, _ = exported
    s = pd.read_parquet(root / "report" / "summaries.parquet").set_index("run")
    assert len(s) == 3
    row = s.loc[str(root / "runs" / "1")]
    assert row["status"] == "diverged" and row["steps"] == 2 and row["final/train/loss"] == 2.5
    assert (row["conv/kind"], row["conv/measure"], row["conv/value"]) == ("linear", "conv/rate", 0.9)
    assert (row["conv/ci_lo"], row["conv/ci_hi"], row["conv/window_lo"], row["conv/window_hi"]) == (0.8, 0.95, 1, 3)
    assert math.isnan(row["steps_to/0.1"]) and s["optim.lr"].tolist() == [0.1, 0.1, 1.0]


def test_logged_marks_with_an_odd_middle_record(tmp_path):
    """The middle record is one of the few with an extra key (as a Jacobian every 500 steps can
    fall): the columns and the marks of what each record logged are still those of the file."""
    from runner.common.records import read_logged

    records = [{"step": i, "a": float(i), **({"b": math.nan} if i % 4 == 0 else {})} for i in range(9)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(strict(r)) + "\n" for r in records))
    columns, logged = read_logged(tmp_path)
    assert columns["a"].tolist() == list(map(float, range(9))) and set(logged) == {"b"}
    assert logged["b"].tolist() == [i % 4 == 0 for i in range(9)] and np.isnan(columns["b"]).all()
