"""Shared by the data tests: a small generated demo dataset (once per session) and CLI runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", FOLDWATCH_CPU_THREADS="1", PYTHONPATH=str(ROOT))


def trainer(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m trainer ...` for real; the caller checks returncode/stdout/stderr."""
    return subprocess.run([sys.executable, "-m", "trainer", *map(str, args)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory) -> Path:
    """8 training + 2 test cases of the demo data, generated once; treat it as read-only."""
    out = tmp_path_factory.mktemp("demo") / "Dataset900_Demo"
    r = trainer("make-demo-data", out, "--train", "8", "--test", "2", "--seed", "3")
    assert r.returncode == 0, r.stderr
    return out


def trainer_in_process(*args) -> int:
    """A light `python -m trainer` command (plan, preprocess, ...) in this process: no
    interpreter start; training runs for real (train_fixture.train_in_process for `train`)."""
    from trainer.cli import main
    return main([str(a) for a in args])


REGIONS = {"background": 0, "organ incl. lesion": [1, 2], "lesion": [2]}


def region_dataset(src: Path, dst: Path, labels=REGIONS, order=(1, 2)) -> Path:
    """A copy of `src` whose dataset.json declares region-based labels (nnU-Net style)."""
    import json
    shutil.copytree(src, dst)
    meta = json.loads((dst / "dataset.json").read_text())
    meta["labels"] = labels
    if order is not None:
        meta["regions_class_order"] = list(order)
    (dst / "dataset.json").write_text(json.dumps(meta))
    return dst


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def write_experiment(path: Path, dataset: Path, configurations: dict | None = None, **more) -> Path:
    exp = {"experiment": "t", "dataset": str(dataset), "results": str(path.parent / "results"),
           "configurations": configurations or {"3d_fullres": {"base_features": 8,
                                                               "max_features": 64}}}
    exp.update(more)
    path.write_text(yaml.safe_dump(exp))
    return path
