"""The built wheel, installed into a fresh virtual environment outside the checkout, runs the
default job: what `pip install .`, `pip install git+...` or a Docker image give a user.

The CI tests install only the wheel (`--no-deps`, from a copy of the sources, so the checkout gets
no build/ folder). The new environment borrows this environment's third-party packages through a
path file in its site-packages instead of installing torch again (~5 GB, minutes): a line of a
`.pth` file only appends its folder to sys.path, so the `.pth` files inside that folder, among
them the editable finder that maps `runner` onto the checkout, never run. The borrowed folder is a
view of this site-packages without runner's own (editable) files and without the Optuna plugin,
so it stands for a plain install without extras. They check:

- the wheel holds every module of runner/, tasks/, hydra_plugins/ and every YAML file of conf/;
- in the new environment `runner`, `tasks`, `hydra_plugins.runner_sweeper` and the config folder
  resolve into its own site-packages, and no editable finder is on sys.meta_path;
- its `runner logger=none task.epochs=1`, started in a folder outside the checkout, completes,
  imports no Python file of the checkout (the interpreter's own import log, PYTHONVERBOSE=1) and
  composes its config from the installed runner/conf (Hydra's record in .hydra/hydra.yaml);
- `runner -m hydra/sweeper=optuna_lr` there stops with one line naming `pip install "runner[optuna]"`.

That pyproject.toml's dependency list resolves and installs is not checked here (the packages are
borrowed); `test_full_install_with_dependencies` does it when RUNNER_TEST_FULL_INSTALL=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

# The checkout's packages, found here and not read from pyproject.toml, so that a folder missing
# from its `packages` shows as files missing from the wheel (hydra_plugins is a namespace package).
PACKAGES = tuple(sorted(d.name for d in ROOT.iterdir() if d.name not in ("tests", "conf")
                        and ((d / "__init__.py").exists() or d.name == "hydra_plugins")))
# What the build reads; the checkout's other files (.venv, outputs, .git) stay behind.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "conf", *PACKAGES)
JOB = ("logger=none", "task.epochs=1")


@dataclass
class Env:
    """A virtual environment and its site-packages (resolved)."""

    prefix: Path
    site: Path

    @classmethod
    def create(cls, prefix: Path, with_pip: bool) -> Env:
        venv.EnvBuilder(with_pip=with_pip, symlinks=True).create(prefix)
        site = subprocess.check_output([str(prefix / "bin" / "python"), "-c",
                                        "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True)
        return cls(prefix, Path(site.strip()).resolve())

    def run(self, *args: str, cwd: Path, verbose: bool = False, timeout: float = 300) -> subprocess.CompletedProcess:
        """Its `bin/ARGS[0]` with ARGS[1:], in `cwd`; no PYTHON* variable of this process leaks in."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
        env.update(PATH=f"{self.prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(self.prefix),
                   WANDB_MODE="offline", WANDB_SILENT="true", **({"PYTHONVERBOSE": "1"} if verbose else {}))
        return subprocess.run([str(self.prefix / "bin" / args[0]), *args[1:]], cwd=cwd, env=env, text=True,
                              capture_output=True, timeout=timeout)


@dataclass
class Installed:
    env: Env       # the new environment, the wheel installed in it
    wheel: Path
    sources: Path  # the copy the wheel was built from


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    if proc.returncode != 0:  # the output without the import log of PYTHONVERBOSE
        said = "\n".join(line for line in (proc.stdout + proc.stderr).splitlines() if not line.startswith(("#", "import ")))
        pytest.fail(f"{what} failed (exit {proc.returncode}):\n{said[-4000:]}")


def _build_wheel(tmp: Path) -> tuple[Path, Path]:
    """(wheel, source copy): `pip wheel --no-deps` of a copy of the sources, offline."""
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-w", str(tmp / "dist"), str(src)], text=True, capture_output=True, timeout=300)
    _check(proc, "building the wheel (pip wheel --no-deps --no-build-isolation)")
    (wheel,) = (tmp / "dist").glob("runner-*.whl")
    return wheel, src


def _borrowed_packages(tmp: Path) -> Path:
    """A folder of links to this environment's site-packages, less runner's own entries (the
    editable finder, its .pth and dist-info) and less the Optuna plugin (the `optuna` extra)."""
    import hydra

    site = Path(hydra.__file__).resolve().parents[1]  # the site-packages of this environment's dependencies
    view = tmp / "borrowed"
    view.mkdir()
    for entry in site.iterdir():
        if entry.name.startswith(("__editable__", "runner-", "__pycache__")) or entry.suffix == ".pth":
            continue
        if entry.name == "hydra_plugins":  # a namespace package: link its plugins one by one
            (view / entry.name).mkdir()
            for plugin in entry.iterdir():
                if plugin.name != "hydra_optuna_sweeper":
                    (view / entry.name / plugin.name).symlink_to(plugin)
        else:
            (view / entry.name).symlink_to(entry)
    return view


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("install")
    assert not tmp.resolve().is_relative_to(ROOT), f"the temporary folder {tmp} lies inside the checkout"
    wheel, src = _build_wheel(tmp)
    env = Env.create(tmp / "venv", with_pip=False)  # pip comes from this environment (pip --python)
    (env.site / "borrowed.pth").write_text(f"{_borrowed_packages(tmp)}\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(env.prefix / "bin" / "python"), "install",
                           "--no-deps", "--no-index", str(wheel)], text=True, capture_output=True, timeout=300)
    _check(proc, f"installing {wheel.name} into {env.prefix}")
    return Installed(env, wheel, src)


def test_the_wheel_holds_every_module_and_config(installed):
    """A package folder that setup.py does not find, or a config outside its
    package-data, would be missing here (and from every install but the editable one)."""
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    src = installed.sources
    expected = {str(p.relative_to(src)) for pkg in PACKAGES for ext in ("py", "yaml") for p in (src / pkg).rglob(f"*.{ext}")}
    expected |= {f"runner/conf/{p.relative_to(src / 'conf')}" for p in (src / "conf").rglob("*") if p.is_file()}
    missing = sorted(expected - names)
    assert not missing, (f"{installed.wheel.name} lacks {len(missing)} files of the checkout: {missing[:10]}. "
                         "setup.py finds the packages under runner/, tasks/, claims/ and hydra_plugins/ (a new top-level "
                         "folder needs its name there); configs ship through [tool.setuptools.package-data].")


def test_the_installed_runner_runs_the_default_job_from_its_own_files(installed, tmp_path):
    probe = ("import json, sys, runner, tasks, hydra_plugins.runner_sweeper as s; from runner.__main__ import CONF_DIR; "
             "print(json.dumps({'runner': runner.__file__, 'tasks': tasks.__file__, 'hydra_plugins.runner_sweeper': "
             "s.__file__, 'CONF_DIR': CONF_DIR, 'meta_path': [repr(f) for f in sys.meta_path]}))")
    env = installed.env
    proc = env.run("python", "-c", probe, cwd=tmp_path)
    _check(proc, "importing runner in the new environment")
    where = json.loads(proc.stdout)
    for name in ("runner", "tasks", "hydra_plugins.runner_sweeper", "CONF_DIR"):
        assert Path(where[name]).resolve().is_relative_to(env.site), \
            f"{name} resolves to {where[name]}, not into the new environment's {env.site}"
    assert not any("editable" in f.lower() for f in where["meta_path"]), f"an editable finder is active: {where['meta_path']}"

    proc = env.run("runner", *JOB, cwd=tmp_path, verbose=True)
    _check(proc, f"`runner {' '.join(JOB)}` of the installed wheel")
    from_checkout = [line for line in proc.stderr.splitlines()
                     if any(f"{ROOT / d}{os.sep}" in line for d in (*PACKAGES, "conf"))]
    assert not from_checkout, "the installed runner imported files of the checkout:\n" + "\n".join(from_checkout[:10])
    assert "site-packages/runner/__main__.py" in proc.stderr, "the import log does not show the installed runner"

    (run_dir,) = [p.parent for p in tmp_path.glob("outputs/*/*/summary.json")]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["error"] is None and summary["steps"] > 0, summary
    sources = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["config_sources"]
    main = next(s for s in sources if s["provider"] == "main")
    assert Path(main["path"]).resolve() == env.site / "runner" / "conf", f"the job's configs came from {main}"


def test_without_the_optuna_extra_the_optuna_sweeper_names_the_extra(installed, tmp_path):
    proc = installed.env.run("runner", "-m", "hydra/sweeper=optuna_lr", *JOB, cwd=tmp_path)
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 1 and 'pip install "runner[optuna]"' in out and len(out.splitlines()) == 1, \
        (f"expected one line naming the extra and exit 1 (main() in runner/__main__.py calls "
         f"extras.require(sys.argv[1:]) before Hydra starts); got exit {proc.returncode}:\n{out}")
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("RUNNER_TEST_FULL_INSTALL") != "1",
                    reason="installs torch and every dependency (~5 GB, minutes); set RUNNER_TEST_FULL_INSTALL=1")
def test_full_install_with_dependencies(installed, tmp_path):
    """`pip install runner-*.whl` with its dependencies from the package index (or pip's cache) into
    a venv that borrows nothing, then the default job and the missing-extra message."""
    full = Env.create(tmp_path / "venv", with_pip=True)
    proc = full.run("python", "-m", "pip", "install", str(installed.wheel), cwd=tmp_path, timeout=1800)
    _check(proc, f"pip install {installed.wheel.name} with its dependencies")
    work = tmp_path / "work"
    work.mkdir()
    _check(full.run("runner", *JOB, cwd=work), "the default job after a full install")
    (summary,) = work.glob("outputs/*/*/summary.json")
    assert json.loads(summary.read_text())["status"] == "completed"
    proc = full.run("runner", "-m", "hydra/sweeper=optuna_lr", *JOB, cwd=work)
    assert proc.returncode == 1 and 'pip install "runner[optuna]"' in proc.stderr, proc.stdout + proc.stderr
