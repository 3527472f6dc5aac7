"""The console never imports torch/monai/nibabel/numpy, not even through a module it imports;
the bridges' libraries (Apprise, wandb, tensorboardX, prometheus_client) only where they
send, write or serve."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBE = r"""
import importlib, pkgutil, sys
import console, contracts, foldwatch   # foldwatch: the helper any training script imports
for pkg in (console, contracts):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        importlib.import_module(m.name)
heavy = sorted(n for n in ("torch", "monai", "nibabel", "numpy", "scipy", "apprise", "wandb",
                           "tensorboardX", "prometheus_client") if n in sys.modules)
print(",".join(heavy))
"""


def test_console_and_contracts_import_no_heavy_packages():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "", f"console pulls in: {out.stdout.strip()}"


def test_trainer_help_is_light():
    out = subprocess.run([sys.executable, "-c",
                          "import sys; from trainer.cli import main; main(['--help']);"
                          "print('torch' in sys.modules)"],
                         cwd=REPO, capture_output=True, text=True, check=True)
    assert "commands:" in out.stdout and out.stdout.strip().endswith("False")
