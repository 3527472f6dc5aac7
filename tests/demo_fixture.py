"""The real demo pipeline up to preprocessed data: make-demo-data -> plan -> preprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import importlib.util

import pytest
import yaml

from train_fixture import ROOT, trainer_env


def trainer(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "trainer", *args], cwd=ROOT, env=trainer_env(),
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"trainer {args[0]} failed:\n{r.stdout}\n{r.stderr}"
    return r


def require_demo_pipeline() -> None:
    """Skip until the data and pipeline areas (demo, plan, preprocess, geometry, metrics) exist."""
    for mod in ("trainer.commands.make_demo_data", "trainer.commands.plan",
                "trainer.commands.preprocess", "trainer.data.geometry", "trainer.evaluation.metrics"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not in this checkout yet")


def demo_experiment(tmp: Path, configurations: dict, name: str = "demo") -> Path:
    """Demo data under tmp/data, an experiment file with the given configurations, planned
    and preprocessed; configurations=None keeps configs/demo.yaml's."""
    require_demo_pipeline()
    data = tmp / "data" / "Dataset900_Demo"
    if not data.exists():
        trainer("make-demo-data", str(data))
    exp = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    exp.update(experiment=name, dataset=str(data), results=str(tmp / "results"))
    if configurations is not None:
        exp["configurations"] = configurations
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(exp))
    trainer("plan", "--experiment", str(path))
    for c in exp["configurations"]:
        trainer("preprocess", "--experiment", str(path), "--configuration", c)
    return path
