"""A stand-in for SLURM's `sbatch`, `srun`, `sacct` and `scancel` on one machine, so the SLURM
launcher presets run through submitit's real SLURM executor in the tests.

`sbatch FILE` runs the submission script that submitit wrote, once per array index, in the
background, with the environment variables SLURM gives a job (submitit reads them to find its
pickles); `srun` runs its command with the `--output`/`--error` files the script names; `sacct`
reports each job as RUNNING until its script has returned; `scontrol requeue JOB` (what submitit
calls on SIGUSR2) runs the job's script again once it has returned, with SLURM_RESTART_COUNT one
higher, as SLURM restarts a requeued job. Install with `install(bin_dir)`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = ("sbatch", "srun", "sacct", "scancel", "scontrol")


def install(bin_dir: Path) -> Path:
    """Write the commands into `bin_dir` (put it first on PATH); returns the folder of job states."""
    states = bin_dir / "states"
    states.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\nFAKE_SLURM_STATES="{states}" exec "{sys.executable}" '
                        f'"{Path(__file__).resolve()}" {name} "$@"\n')
        path.chmod(0o755)
    return states


def stop_all(states: Path) -> None:
    """Kill every job still running (a test that failed while a job waited): each job's process group."""
    for pid_file in states.glob("pid-*"):
        if not (states / pid_file.name.removeprefix("pid-")).exists():
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _states() -> Path:
    return Path(os.environ["FAKE_SLURM_STATES"])


def sbatch(script: str) -> None:
    text = Path(script).read_text()
    array = re.search(r"^#SBATCH --array=(\d+)-(\d+)", text, re.MULTILINE)
    indices = range(int(array.group(1)), int(array.group(2)) + 1) if array else [None]
    job = str(int(time.time() * 1000) % 10**9)
    for index in indices:
        env = {**os.environ, "SLURM_JOB_ID": job, "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1",
               "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "localhost", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
        name = job
        if index is not None:
            env |= {"SLURM_ARRAY_JOB_ID": job, "SLURM_ARRAY_TASK_ID": str(index)}
            name = f"{job}_{index}"
        marker = _states() / name
        again = _states() / f"requeue-{name}"  # written by `scontrol requeue` while the job runs
        loop = (f'n=0; while :; do SLURM_RESTART_COUNT=$n /bin/bash "{script}"; [ -e "{again}" ] || break; '
                f'rm -f "{again}"; n=$((n+1)); done; touch "{marker}"')
        job_proc = subprocess.Popen(["/bin/sh", "-c", loop], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
        (_states() / f"pid-{name}").write_text(str(job_proc.pid))  # its process group, for `stop_all`
    print(f"Submitted batch job {job}")


def _fill(pattern: str) -> str:
    job = os.environ.get("SLURM_ARRAY_JOB_ID", os.environ["SLURM_JOB_ID"])
    task = os.environ.get("SLURM_ARRAY_TASK_ID", "")
    return (pattern.replace("%A", job).replace("%a", task).replace("%j", os.environ["SLURM_JOB_ID"])
            .replace("%t", "0"))


def srun(args: list[str]) -> int:
    out = err = None
    while args and args[0].startswith("--"):
        flag = args.pop(0)
        if flag in ("--output", "--error"):
            path = Path(_fill(args.pop(0)))
            path.parent.mkdir(parents=True, exist_ok=True)
            if flag == "--output":
                out = path
            else:
                err = path
    with open(out or os.devnull, "a") as stdout, open(err or out or os.devnull, "a") as stderr:
        return subprocess.call(args, stdout=stdout, stderr=stderr)


def sacct(args: list[str]) -> None:
    jobs = [args[i + 1] for i, a in enumerate(args) if a == "-j"]
    print("JobID|State|NodeList")
    for job in jobs:
        for marker in sorted(_states().glob(f"{job}*")) or [None]:
            name = marker.name if marker else job
            print(f"{name}|{'COMPLETED' if marker else 'RUNNING'}|localhost")


def scontrol(args: list[str]) -> None:
    if args[:1] == ["requeue"]:
        for job in args[1].split(","):
            (_states() / f"requeue-{job}").touch()


if __name__ == "__main__":
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "sbatch":
        sbatch(rest[-1])
    elif command == "srun":
        sys.exit(srun(rest))
    elif command == "sacct":
        sacct(rest)
    elif command == "scontrol":
        scontrol(rest)
