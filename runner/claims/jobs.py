"""Running a claim's sweep through the real `runner` entry point, and finding its jobs afterwards.

The sweep is one `runner -m task=... <overrides> <key>=v1,v2,... logger=none hydra.sweep.dir=DIR`
called in this process (runner.__main__.main, as the console script would; torch stays imported
across claims). The runner skips a config that already finished in DIR, so a rerun only measures.
Jobs are matched to settings by their own `.hydra/overrides.yaml`, so stale job folders of an
earlier version of the claim are never read.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import yaml

from runner.claims.spec import Claim

_PLAIN = re.compile(r"[\w.:/+-]+")


def hydra_value(v: Any) -> str:
    """A value in Hydra's override syntax."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(hydra_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ",".join(f"{k}:{hydra_value(x)}" for k, x in v.items()) + "}"
    s = str(v)
    return s if _PLAIN.fullmatch(s) else "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def job_overrides(claim: Claim, setting: Mapping[str, Any]) -> list[str]:
    """What one job of the claim is run with (the task, the experiment, one setting)."""
    return [f"task={claim.task}", *(f"{k}={hydra_value(v)}" for k, v in claim.overrides.items()),
            *(f"{k}={hydra_value(v)}" for k, v in setting.items())]


def sweep_argv(claim: Claim, sweep_dir: Path, rerun: bool = False) -> list[str]:
    swept = [f"{k}={','.join(hydra_value(v) for v in values)}" for k, values in claim.sweep.items()]
    return ["-m", f"task={claim.task}", *(f"{k}={hydra_value(v)}" for k, v in claim.overrides.items()), *swept,
            "logger=none", f"hydra.sweep.dir={sweep_dir}", *(["rerun=true"] if rerun else [])]


def parsed(overrides: list[str]) -> dict[str, Any]:
    """{key: value} as Hydra reads the overrides (so 1e-5 and 1.0e-05 are the same)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return {o.get_key_element(): o.value() for o in OverridesParser.create().parse_overrides(overrides)}


def find_jobs(claim: Claim, sweep_dir: Path) -> dict[int, list[Path]]:
    """Setting index -> the job folders of the sweep whose overrides are exactly that setting's."""
    wanted = [parsed(job_overrides(claim, s)) for s in claim.settings()]
    found: dict[int, list[Path]] = {i: [] for i in range(len(wanted))}
    for path in sorted(Path(sweep_dir).glob("*/.hydra/overrides.yaml"), key=lambda p: _job_number(p.parent.parent)):
        try:
            have = parsed([o for o in yaml.safe_load(path.read_text()) or []
                           if not o.startswith(("logger=", "rerun=", "hydra."))])
        except Exception:  # noqa: BLE001 - a folder the runner did not write: not ours
            continue
        for i, w in enumerate(wanted):
            if have == w:
                found[i].append(path.parent.parent)
    return found


def _job_number(folder: Path) -> tuple[int, str]:
    return (int(folder.name), "") if folder.name.isdigit() else (10**9, folder.name)


def run_sweep(claim: Claim, sweep_dir: Path, log: TextIO | None, rerun: bool = False) -> int:
    """Run the claim's jobs with `runner -m` in this process; the runner's own exit code. Its
    terminal output goes to `log` (None: to this terminal)."""
    from hydra.core.global_hydra import GlobalHydra

    import runner.__main__ as cli
    import runner.sweep.summary as sweep

    GlobalHydra.instance().clear()
    cli._exit_codes.clear()  # the entry point keeps these per process; a second call starts clean
    sweep.exit_code = None
    argv, sys.argv = sys.argv, ["runner", *sweep_argv(claim, sweep_dir, rerun)]
    code = 0
    try:
        with _output_to(log):
            cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
    return code


@contextlib.contextmanager
def _output_to(log: TextIO | None) -> Iterator[None]:
    if log is None:
        yield
        return
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    finally:  # Hydra's logging handlers may hold the redirected stream: detach them
        for logger in [logging.getLogger(), *map(logging.getLogger, list(logging.Logger.manager.loggerDict))]:
            for h in list(getattr(logger, "handlers", [])):
                if getattr(h, "stream", None) is log:
                    logger.removeHandler(h)
