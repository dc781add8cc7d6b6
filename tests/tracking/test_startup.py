"""What a run's process imports, and in which order, to start fast (runner/tracking/tracker.py
`import_before_torch`, runner/__main__.py's collection at exit): no numbers or files change."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
from omegaconf import OmegaConf
from runner.tracking.tracker import import_before_torch
import_before_torch(OmegaConf.create({LOGGER}))
print("wandb" in sys.modules, "wandb.sdk.launch.inputs.internal" in sys.modules, "torch" in sys.modules)
"""


def imported(logger: str) -> str:
    code = CHECK.replace("{LOGGER}", logger)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_wandb_imported_before_torch_only_for_a_wandb_logger():
    assert imported('{"_target_": "runner.tracking.tracker.WandbTracker", "_partial_": True}') == "True True False"
    assert imported('{"_target_": "runner.tracking.tracker.NullTracker", "_partial_": True}') == "False False False"


def test_garbage_left_at_exit_is_still_finalized(tmp_path):
    """The collection at exit runs before the rest is frozen: a cycle that is garbage by then is
    finalized (its __del__ runs) before the process ends."""
    out = tmp_path / "left.txt"
    code = ("import gc, pathlib, runner.__main__\n"
            "class Node:\n"
            f"    def __del__(self): pathlib.Path({str(out)!r}).write_text('finalized')\n"
            "a, b = Node(), Node(); a.other, b.other = b, a\n"
            "del a, b\n"
            "gc.disable()\n")  # the cycle waits for the collection at exit
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert out.read_text() == "finalized"
