"""The whole demo, as `make demo` runs it but headless: 5 folds x 2 configurations ->
cross-validation -> find-best -> test predictions. Several minutes on 2 cores: `-m slow`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_pipeline_end_to_end(tmp_path):
    env = dict(os.environ, FOLDWATCH_NO_NVML="1")
    r = subprocess.run([sys.executable, "-m", "console.clients.cli", "demo", str(tmp_path / "demo"),
                        "--headless"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=3600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    root = tmp_path / "demo" / "results" / "demo"
    for cfg in ("2d", "3d_fullres"):
        cv = json.loads((root / cfg / "crossval" / "summary.json").read_text())
        assert cv["foreground_mean"]["Dice"] >= 0.85, (cfg, cv["mean"])
    best = json.loads((root / "best_configuration.json").read_text())
    assert best["foreground_mean_dice"] >= 0.85
    test = json.loads((root / "predictions" / "summary.json").read_text())
    assert len(test["metric_per_case"]) == 6
    assert test["foreground_mean"]["Dice"] >= 0.85
