"""Throughput of the runner against a minimal hand-written PyTorch loop, in one process.

    python -m runner.bench                                  # digits, MLP, Adam, batch 64
    python -m runner.bench task=mnist model=cnn --data random   # MNIST-sized, no download
    python -m runner.bench task=cifar model=fastnet --data random device=cuda
    python -m runner.bench task=gan --steps 5000             # a min-max game (simultaneous GDA)
    python -m runner.bench --lanes task=gan task.path_every=0 --jobs 100   # a sweep: lanes against basic
    python -m runner.bench --lanes --sweep bilinear-nofig --sweep frozenlake --rounds 2   # issue 15's sweeps

Both loops train the same model (same initial weights) on the same device-resident tensors
with the same batch size and optimizer config; the runner path is `runner.run.loop.train` with the
task's step, the optimizer set, metrics every `log_every` steps into metrics.jsonl. For a game
the reference is simultaneous GDA written out: the game's two losses, one autograd call per
player, one optimizer step per player. Evaluation is switched off in both. Rounds alternate between the two and the median is reported.
Arguments are Hydra overrides of the runner's config, plus --steps, --rounds and --data.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

from runner.__main__ import CONF_DIR
from runner.run import build
from runner.run.loop import train
from runner.run.metrics import History, MetricsFile
from runner.task.device import Runtime
from tasks.classifier.datasets import ImageData


def random_images(n: int, shape: tuple[int, ...], classes: int = 10) -> ImageData:
    """Random images of a real dataset's shape, for timing only (never for results)."""
    g = torch.Generator().manual_seed(0)
    return ImageData(torch.rand(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g),
                     torch.rand(1000, *shape, generator=g), torch.randint(0, classes, (1000,), generator=g), classes)


SHAPES = {"mnist": (60000, (1, 28, 28)), "cifar10": (50000, (3, 32, 32)), "cifar100": (50000, (3, 32, 32))}


def bare_loop(net, x, y, make_opt, batch_size: int, steps: int, rt: Runtime, label_smoothing: float, augment) -> float:
    """The reference: what a person would write by hand. Returns seconds for `steps` steps."""
    opt = make_opt(net.parameters())
    n = len(y)
    order, pos = torch.randperm(n, device=x.device), 0
    rt.sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, device=x.device), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        xb = augment(x[idx]) if augment else x[idx]
        with rt.autocast():
            loss = F.cross_entropy(net(xb), y[idx], label_smoothing=label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    rt.sync()
    return time.perf_counter() - t0


def bare_gda(task, make_opt, steps: int, rt: Runtime) -> float:
    """Simultaneous GDA by hand on the task's game (same losses, same optimizer config)."""
    gen, disc = (list(task.players[r].parameters()) for r in ("generator", "discriminator"))
    opt_g, opt_d = make_opt(gen), make_opt(disc)
    rt.sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss_g, loss_d = task.game.losses(task.players, task.game.sample())
        for p, g in zip(gen, torch.autograd.grad(loss_g, gen, retain_graph=True)):
            p.grad = g
        for p, g in zip(disc, torch.autograd.grad(loss_d, disc)):
            p.grad = g
        opt_g.step()
        opt_d.step()
    rt.sync()
    return time.perf_counter() - t0


# The sweeps issue 15 measures lanes on: N seeds of each, through both launchers.
LANE_SWEEPS = {
    "bilinear": ["task=gan"],  # the bilinear game, simultaneous GDA, 2,000 steps, its phase-plane picture
    "bilinear-nofig": ["task=gan", "task.path_every=0"],  # the same without the picture
    "frozenlake": ["task=gridworld"],  # exact PG on FrozenLake 4x4, 1,000 steps, its policy.png
    # the ring GAN, 256-256 MLP players, batch 256, SGD: 200 of its 2,000 steps (its W2 at 100 and 200,
    # ARPACK at step 20), its samples.png pictures
    "mog": ["task=gan", "task.game=mog", "model=mlp", "task.steps=200"],
}
LAUNCHER = "hydra_plugins.runner_lanes.lanes_launcher"
# Where a sweep's time goes: (module, attribute) timed in both launchers (each name where it is called).
PHASES = {
    "composing": [("hydra._internal.config_loader_impl", "ConfigLoaderImpl.load_sweep_config"),
                  (LAUNCHER, "Composer._derived")],
    ".hydra/ files": [("hydra.core.utils", "_save_config"), (LAUNCHER, "SavedYaml.save")],
    "steps": [("runner.run.job", "train"), ("runner.lanes.group_run", "train")],
    "convergence fit": [("runner.run.outcome", "fit_tail")],
    "summary.json": [("runner.run.outcome", "_write_summary")],
}


@contextlib.contextmanager
def timed(phases: dict[str, list[tuple[str, str]]]) -> Iterator[dict[str, float]]:
    """Seconds spent in each phase's functions while the block runs (wrapped, then put back)."""
    import importlib

    spent = dict.fromkeys(phases, 0.0)
    undo = []

    def wrap(owner, attr: str, phase: str) -> None:
        original = getattr(owner, attr)

        @functools.wraps(original)
        def timed_call(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[phase] += time.perf_counter() - t0

        setattr(owner, attr, timed_call)
        undo.append((owner, attr, original))

    for phase, places in phases.items():
        for module, path in places:
            owner, *rest = [importlib.import_module(module), *path.split(".")]
            for name in rest[:-1]:
                owner = getattr(owner, name)
            wrap(owner, rest[-1], phase)
    try:
        yield spent
    finally:
        for owner, attr, original in reversed(undo):
            setattr(owner, attr, original)


def lanes_vs_basic(overrides: list[str], jobs: int, rounds: int = 1) -> dict[str, float]:
    """The same sweep of `jobs` seeds through the basic launcher and through lanes, in this process
    (torch imported once, before both; a 2-job sweep through each first, so neither pays the
    imports), each into a fresh folder, `rounds` times in turn: wall time, jobs/s, the ratio of the
    medians, and where each launcher's time went."""
    import sys

    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import get_object

    import runner.__main__ as cli

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        task_class = get_object(compose("config", overrides=overrides).task._target_)
    phases = {**PHASES, **({"figures": [(task_class.__module__, f"{task_class.__name__}.figures")]}
                           if hasattr(task_class, "figures") else {})}
    times: dict[str, list[float]] = {"basic": [], "lanes": []}
    where: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds + 1):  # round 0: 2 jobs each, warming up
            for launcher in times:
                n = jobs if r else 2
                GlobalHydra.instance().clear()
                sys.argv = ["runner", "-m", *overrides, f"seed=range({n})", "logger=none",
                            f"hydra.sweep.dir={tmp}/{launcher}{r}",
                            *(["hydra/launcher=lanes"] if launcher == "lanes" else [])]
                with timed(phases) as spent, contextlib.suppress(SystemExit):
                    t0 = time.perf_counter()
                    cli.main()
                if r:
                    times[launcher].append(time.perf_counter() - t0)
                    where.setdefault(launcher, []).append(spent)
    med = {launcher: statistics.median(t) for launcher, t in times.items()}
    where = {launcher: {k: statistics.median(s[k] for s in spent) for k in phases} for launcher, spent in where.items()}
    print(f"lanes benchmark [{' '.join(overrides)}], {jobs} jobs, {rounds} round(s), launchers in turn:")
    for launcher, t in med.items():
        rest = t - sum(where[launcher].values())
        parts = ", ".join(f"{k} {v / jobs * 1e3:.1f}" for k, v in [*where[launcher].items(), ("the rest", rest)])
        print(f"  {launcher:5s}: {t:8.2f} s  {jobs / t:8.2f} jobs/s  (each round: "
              f"{', '.join(f'{x:.2f}' for x in times[launcher])} s)")
        print(f"         ms per job: {parts}")
    print(f"  ratio lanes/basic throughput: {med['basic'] / med['lanes']:.2f}")
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. task=mnist model=cnn")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=None, help="default 5; with --lanes 1")
    ap.add_argument("--data", choices=["real", "random"], default="real",
                    help="random: tensors of the dataset's shape (no download); timing only")
    ap.add_argument("--lanes", action="store_true", help="a sweep of --jobs seeds: lanes against the basic launcher")
    ap.add_argument("--sweep", choices=sorted(LANE_SWEEPS), action="append",
                    help="with --lanes: one of issue 15's sweeps (repeatable), its overrides before the others")
    ap.add_argument("--jobs", type=int, default=100)
    args = ap.parse_args()
    if args.lanes:
        for name in args.sweep or [None]:
            lanes_vs_basic([*LANE_SWEEPS.get(name, []), *args.overrides], args.jobs, args.rounds or 1)
        return None
    args.rounds = args.rounds or 5
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=["logger=none", *args.overrides])
    game = cfg.task._target_.endswith("GameGDA")
    if game and (cfg.task.scheme != "simultaneous" or cfg.task.d_steps != 1 or cfg.task.lr_ratio != 1):
        raise SystemExit("the bare GDA loop is simultaneous with d_steps=1 and lr_ratio=1; compare those")
    if args.data == "random":
        name = cfg.task.dataset._target_.rsplit(".", 1)[1]
        n, shape = SHAPES[name]
        with open_dict(cfg):
            cfg.task.dataset = {"_target_": "runner.bench.random_images", "_partial_": True, "n": n, "shape": list(shape)}
    rt = Runtime.from_config(cfg.device, cfg.precision, cfg.compile)
    torch.manual_seed(cfg.seed)
    task = build.task(cfg, rt)
    with open_dict(cfg):
        cfg.total_steps = task.total_steps = args.steps
    task.evaluate = lambda: {}  # evaluation off in both loops: this measures training throughput
    nets = task.models()
    init = copy.deepcopy({role: m.state_dict() for role, m in nets.items()})
    make_opt = instantiate(cfg.optim) if "aux" not in cfg.optim else None
    if make_opt is None:
        raise SystemExit("the bare loop uses one optimizer; pick an optim without `aux` (not muon)")
    augment = task._augment if not game and task.augment else None
    runner_s, bare_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds + 1):  # round 0 warms up both paths (allocator, kernels, caches)
            for role, m in nets.items():
                m.load_state_dict(init[role])
            opts = build.optimizers(cfg, task)
            history, file = History(task.primary, {}), MetricsFile(Path(tmp) / "metrics.jsonl")

            def emit(record):
                file.write(record)
                history.add(record)

            rt.sync()
            t0 = time.perf_counter()
            train(task, opts, rt, emit, log_every=cfg.log_every, eval_every=10**9)
            rt.sync()
            t_runner = time.perf_counter() - t0
            file.close()
            for role, m in nets.items():
                m.load_state_dict(init[role])
            t_bare = bare_gda(task, make_opt, args.steps, rt) if game else bare_loop(
                task.forward, task.x_train, task.y_train, make_opt, task.batch_size, args.steps, rt,
                task.label_smoothing, augment)
            if r:
                runner_s.append(t_runner)
                bare_s.append(t_bare)
    tr, tb = statistics.median(runner_s), statistics.median(bare_s)
    label = " ".join(args.overrides) or "default"
    print(f"benchmark [{label}] on {rt.device}: {args.steps} steps x {args.rounds} rounds, "
          f"batch {cfg.task.batch_size}, log_every {cfg.log_every}")
    print(f"  bare loop : {args.steps / tb:10.1f} steps/s  ({tb / args.steps * 1e3:.3f} ms/step)")
    print(f"  runner    : {args.steps / tr:10.1f} steps/s  ({tr / args.steps * 1e3:.3f} ms/step)")
    print(f"  ratio runner/bare throughput: {tb / tr:.3f}")


if __name__ == "__main__":
    main()
