"""`trainer: nnunetv2` with nnU-Net v2's cascade, for real, through the engine: plan_and_preprocess
with a small GPU-memory target (so nnU-Net plans 3d_lowres on a tiny dataset), 3d_lowres and
3d_cascade_fullres folds over the dataset's own 2-fold splits_final.json, then the test-set chain:
3d_lowres predictions -> their ensemble -> cascade predictions with -prev_stage_predictions ->
the final ensemble. Find-best is off: on one-epoch models its choice is a coin toss, and the
stages' decisions from its choice are tested in tests/test_nnunet_predict_units.py."""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml

from console.engine.core import Engine
from contracts.jsonio import iter_jsonl
from engine_helpers import REPO, cpu_sampler, poll_until, stop_and_close

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nnunetv2") is None,
                                reason="needs the nnunet extra (pip install '.[nnunet]')")

LOW, CAS = "3d_lowres", "3d_cascade_fullres"
SHAPE = (8, 40, 40)     # with a 0.005 GB target: 3d_fullres patch 4x20x16, 3d_lowres 8x26x26


@pytest.mark.timeout(1800)
def test_cascade_test_set_prediction_through_the_engine(tmp_path, monkeypatch):
    import nibabel as nib
    import numpy as np
    from nnunet_fixture import make_tiny_dataset
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    raw = make_tiny_dataset(tmp_path / "nnUNet_raw", cases=4, shape=SHAPE)
    cases = [f"tiny_{i:03d}" for i in range(4)]     # nnU-Net copies this file at plan time
    (raw / "splits_final.json").write_text(json.dumps([
        {"train": cases[2:], "val": cases[:2]}, {"train": cases[:2], "val": cases[2:]}]))
    roots = {k: str(tmp_path / f"nnUNet_{k}") for k in ("raw", "preprocessed", "results")}
    data = {"experiment": "casc", "trainer": "nnunetv2", "results": str(tmp_path / "results"),
            "folds": [0, 1], "configurations": {LOW: {}, CAS: {}},
            "nnunet": {"dataset": 901, **roots, "plans": "nnUNetPlans_tiny",
                       "gpu_memory_target_gb": 0.005, "epochs": 1, "iterations_per_epoch": 2,
                       "val_iterations": 1, "workers": 0, "processes": 1, "predict_processes": 0,
                       "stagger_folds": False, "verify_dataset_integrity": False,
                       "tta": False},   # 8x fewer passes; test_nnunet_kind keeps nnU-Net's TTA
            "pipeline": {"find_best": False, "postprocess": False},
            "devices": {"cpu_slots": 2, "cpu_threads_per_run": 1},
            "watchdog": {"backoff_initial_s": 0.5, "backoff_max_s": 1, "grace_period_s": 20,
                         "stall_timeout_s": 300}}
    path = tmp_path / "casc.yaml"
    path.write_text(yaml.safe_dump(data))
    eng = Engine(path, sampler=cpu_sampler())
    try:
        snap = poll_until(eng, lambda s: s.finished, timeout=1500, every=0.2)
        assert snap.succeeded, [(r.key, r.state, r.message) for r in snap.runs]
    finally:
        stop_and_close(eng)

    # nnU-Net planned both stages with the target we passed
    plans = json.loads(next((tmp_path / "nnUNet_preprocessed").glob(
        "Dataset901_*/nnUNetPlans_tiny.json")).read_text())["configurations"]
    assert plans[LOW]["next_stage"] == CAS and plans[CAS]["previous_stage"] == LOW
    # every prediction stage ran (none completed with a skip reason)
    stages = [f"predict-{c}-fold{k}" for c in (LOW, CAS) for k in (0, 1)]
    for key in [*stages, f"ensemble-{LOW}", "ensemble"]:
        end = [e for e in iter_jsonl(eng.runs[key].job.run_dir / "metrics.jsonl")
               if e["event"] == "end"][-1]
        assert end["status"] == "completed" and end["exit_code"] == 0 and not end.get("message"), \
            (key, end)
    launches = {d["run"]: d["argv"] for d in iter_jsonl(eng.layout.console_events)
                if d.get("action") == "launch"}
    preds = eng.layout.root / "nnunet_predictions"
    for k in (0, 1):
        argv = launches[f"predict-{CAS}-fold{k}"]
        assert argv[argv.index("-prev_stage_predictions") + 1] == str(preds / LOW / "ensemble")
        assert "-prev_stage_predictions" not in launches[f"predict-{LOW}-fold{k}"]
        assert all("--disable_tta" in launches[f"predict-{c}-fold{k}"] and
                   "--disable-tta" in launches[f"{c}/{k}"] for c in (LOW, CAS))
    final = launches["ensemble"]
    assert sorted(final[final.index("-i") + 1:final.index("-o")]) == [
        str(preds / c / f"fold_{k}") for c in (CAS, LOW) for k in (0, 1)]

    # the files: per-fold probabilities, the first stage's and the final segmentations
    tests = ["tiny_test_000", "tiny_test_001"]
    for c in (LOW, CAS):
        for k in (0, 1):
            assert sorted(p.name for p in (preds / c / f"fold_{k}").glob("*.npz")) == \
                [f"{t}.npz" for t in tests]
    for folder in (preds / LOW / "ensemble", eng.layout.predictions):
        assert sorted(p.name for p in folder.glob("*.nii.gz")) == [f"{t}.nii.gz" for t in tests]
        for t in tests:
            seg = nib.load(str(folder / f"{t}.nii.gz"))
            image = nib.load(str(raw / "imagesTs" / f"{t}_0000.nii.gz"))
            values = np.asarray(seg.dataobj)
            assert seg.shape == image.shape and np.allclose(seg.affine, image.affine)
            assert np.issubdtype(values.dtype, np.integer) and set(np.unique(values)) <= {0, 1}
