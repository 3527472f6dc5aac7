"""The engine over the REAL trainer on the demo data: plan -> preprocess -> a fold that is
killed with SIGKILL mid-training and resumed by the watchdog to completion."""

from __future__ import annotations

import importlib.util

import pytest

from console.engine.core import Engine
from contracts.jsonio import iter_jsonl
from engine_helpers import (actions, cpu_sampler, real_trainer_experiment, run_to_success,
                            sigkill_mid_training, stop_and_close)

TINY = {"2d": {"patch_size": "auto", "batch_size": 4, "epochs": 3, "iterations_per_epoch": 3,
               "val_iterations": 1, "base_features": 4, "max_features": 16, "num_workers": 0,
               "tta_mirroring": False}}


@pytest.mark.skipif(importlib.util.find_spec("trainer.evaluation.metrics") is None,
                    reason="fold validation needs trainer/metrics.py (pipeline branch)")
def test_real_trainer_killed_mid_training_is_resumed_to_completion(tmp_path, monkeypatch):
    path = real_trainer_experiment(tmp_path, monkeypatch, "itest", TINY, (0,), {
        "evaluate": False, "find_best": False, "postprocess": False, "predict_test": False})
    eng = Engine(path, sampler=cpu_sampler())
    try:
        sigkill_mid_training(eng, eng.runs["2d/0"], 1, timeout=900, every=0.2)
        run_to_success(eng, timeout=900)
        acts = actions(eng, "2d/0")
        assert acts.count("launch") == 2 and "restart" in acts
        launches = [d for d in eng.decisions.recent if d.action == "launch" and d.run_key == "2d/0"]
        assert "--resume" in launches[1].reason
        starts = [e for e in iter_jsonl(eng.layout.fold_dir("2d", 0) / "metrics.jsonl")
                  if e["event"] == "start"]
        assert len(starts) == 2 and (starts[1]["resumed_from"] or 0) >= 1
        assert (eng.layout.fold_dir("2d", 0) / "checkpoints" / "final.pt").exists()
    finally:
        stop_and_close(eng)
