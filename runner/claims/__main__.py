"""`runner-claim`: theorems as tests. Each claim (one YAML file in claims/, runner/claims/spec.py)
names an experiment, the values it sweeps, what to measure and what theory predicts; this command
runs the sweep through the runner, measures every job and prints one row per setting:
predicted, measured with its interval, PASS or FAIL.

    runner-claim                                # every claim
    runner-claim bilinear_simultaneous_gda      # one (or several) by name, or paths to claim files
    runner-claim --fast                         # the claims that take seconds (CI)
    runner-claim --list                         # names, speed and statements
    runner-claim --check                        # validate every claim file, run nothing

Each claim's sweep goes to `<out>/<name>` (default outputs/claims/<name>; finished jobs there are
skipped, so a rerun only measures; `--rerun` runs them again), which also gets `claim.json`:
{"name", "source", "measure", "relation", "rows": [{"setting", "predicted", "measured", "ci",
"verdict", "runs", ...}]} (runner-report draws the theory overlay from it). Exit status: 0 when
every row passes, 1 when one fails, 2 when a claim file is invalid (nothing is run then).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from runner.claims.jobs import find_jobs, run_sweep
from runner.claims.measure import Row, judge, measure
from runner.claims.spec import Claim, ClaimError, discover, load
from runner.claims.table import record, table


def claims_dir() -> Path:
    """The shipped claims: the package `claims` (the clone's claims/ in an editable install)."""
    spec = importlib.util.find_spec("claims")
    if spec is not None and spec.origin:
        return Path(spec.origin).parent
    return Path(__file__).resolve().parent.parent / "claims"


def select(names: list[str]) -> list[Path]:
    """Claim files by name (shipped) or path (a file or a folder of them)."""
    shipped = {p.stem: p for p in discover(claims_dir())}
    if not names:
        return list(shipped.values())
    paths: list[Path] = []
    for name in names:
        p = Path(name)
        if p.is_dir():
            paths += discover(p)
        elif p.suffix in (".yaml", ".yml") or p.exists():
            paths.append(p)
        elif name in shipped:
            paths.append(shipped[name])
        else:
            raise ClaimError([f"{name}: no such claim; claims: {', '.join(shipped)}"])
    return paths


def rows_of(claim: Claim, sweep_dir: Path) -> list[Row]:
    """One row per setting (pooled keys merged), in sweep order; reference rows are measured first,
    then every other row is judged against its own reference."""
    jobs = find_jobs(claim, sweep_dir)
    grouped: dict[tuple, Row] = {}
    for i, setting in enumerate(claim.settings()):
        shown = {k: v for k, v in setting.items() if k not in claim.pool}
        row = grouped.setdefault(tuple((k, repr(v)) for k, v in shown.items()), Row(shown, []))
        row.runs += jobs[i]
        row.reference = bool(claim.reference) and all(shown.get(k) == v for k, v in claim.reference.items())
    rows = list(grouped.values())
    refs = {}
    for row in rows:
        if row.reference:
            measured_only(claim, row)
            refs[_without(row.setting, claim.reference)] = row
    for row in rows:
        if not row.reference:
            ref = refs.get(_without(row.setting, claim.reference)) if claim.reference else None
            judge(claim, row, reference=ref.measured if ref else None)
            if claim.reference and ref is None:
                row.verdict, row.reason = "FAIL", "no reference setting for this row"
    return rows


def measured_only(claim: Claim, row: Row) -> None:
    """A reference row: what the other rows are compared with, not a verdict of its own."""
    values = [measure(claim, run) for run in row.runs]
    nums = sorted(m.value for m in values if isinstance(m.value, (int, float)))
    row.measured = nums[len(nums) // 2] if nums else None
    row.verdict, row.reason = "ref", next((m.reason for m in values if m.reason), "")


def _without(setting: dict[str, Any], keys: dict[str, Any]) -> tuple:
    return tuple((k, repr(v)) for k, v in setting.items() if k not in keys)


def main(argv: list[str] | None = None) -> None:
    intro, _, rest = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(prog="runner-claim", description=intro, epilog=rest,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("claims", nargs="*", help="claim names or paths to claim files/folders (default: all)")
    parser.add_argument("--fast", action="store_true", help="only the claims marked fast: true (seconds; CI)")
    parser.add_argument("--list", action="store_true", help="list the claims and exit")
    parser.add_argument("--check", action="store_true", help="validate the claim files against the config, run nothing")
    parser.add_argument("--out", type=Path, default=Path("outputs/claims"), help="sweep folders go to OUT/<name>")
    parser.add_argument("--rerun", action="store_true", help="run finished jobs again (rerun=true)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the runner's own output")
    args = parser.parse_args(argv)
    console = Console()
    try:
        claims = [load(p) for p in select(args.claims)]
        claims = [c for c in claims if c.fast or not args.fast]
        if not args.list:
            from runner.claims.check import problems

            found = problems(claims)
            if found:
                raise ClaimError(found)
    except ClaimError as e:
        console.print("[red]invalid claim[/] (nothing was run):\n" + "\n".join(f"  - {p}" for p in e.problems),
                      highlight=False, soft_wrap=True)
        sys.exit(2)
    if args.list:
        listing = Table("claim", "fast", "jobs", "statement", box=None, pad_edge=False)
        for c in claims:
            listing.add_row(c.name, "yes" if c.fast else "", str(len(c.settings())), c.statement)
        console.print(listing)
        return
    if args.check:
        console.print(f"{len(claims)} claim files valid: {', '.join(c.name for c in claims)}", highlight=False)
        return
    sys.exit(run_claims(claims, args.out, args.rerun, args.verbose, console))


def run_claims(claims: list[Claim], out: Path, rerun: bool, verbose: bool, console: Console) -> int:
    """Run, measure, print and record each claim; 1 if any row fails."""
    summary, t_all = [], time.perf_counter()
    for claim in claims:
        sweep_dir = out / claim.name
        sweep_dir.mkdir(parents=True, exist_ok=True)
        console.print(f"claim {claim.name}: {len(claim.settings())} jobs in {sweep_dir}", highlight=False)
        t0 = time.perf_counter()
        with open(sweep_dir / "runner.out", "a") as log:
            code = run_sweep(claim, sweep_dir, None if verbose else log, rerun)
        if code != 0:  # a failed job: its row says why; the runner's own words are in runner.out
            console.print(f"  the runner exited with {code} (its output: {sweep_dir / 'runner.out'})", highlight=False)
        rows = rows_of(claim, sweep_dir)
        wall = time.perf_counter() - t0
        record(claim, rows, sweep_dir, wall)
        console.print(table(claim, rows, wall))
        for r in rows:
            if r.reason and r.verdict != "PASS":
                console.print(f"  {r.verdict} {' '.join(f'{k}={v}' for k, v in r.setting.items())}: {r.reason}",
                              highlight=False, soft_wrap=True)
        verdicts = [r.verdict for r in rows if not r.reference]
        summary.append((claim.name, verdicts.count("PASS"), len(verdicts), wall))
    total = Table("claim", "rows passed", "", "time", title="claims", title_justify="left", pad_edge=False)
    for name, passed, n, wall in summary:
        ok = passed == n and n > 0
        total.add_row(name, f"{passed}/{n}", "[green]PASS[/]" if ok else "[red]FAIL[/]", f"{wall:.1f} s")
    console.print(total)
    failed = sum(p != n or n == 0 for _, p, n, _ in summary)
    console.print(f"{len(summary) - failed} of {len(summary)} claims pass · {time.perf_counter() - t_all:.1f} s",
                  highlight=False)
    return 1 if failed else 0


if __name__ == "__main__":
    main()
