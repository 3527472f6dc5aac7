"""A fold of the real demo (NIfTI in, NIfTI out) trains, validates and re-validates on resume."""

import os

import nibabel as nib
import numpy as np
import pytest

from contracts.events import validate_event
from contracts.experiment import load_experiment
from contracts.jsonio import iter_jsonl, read_json
from demo_fixture import demo_experiment
from train_fixture import run_train_here   # `python -m trainer train` in this process

TINY = {"3d_fullres": {"patch_size": "auto", "batch_size": 2, "epochs": 1,
                       "iterations_per_epoch": 2, "val_iterations": 1, "base_features": 4,
                       "max_features": 16, "num_workers": 1, "tta_mirroring": True}}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return demo_experiment(tmp_path_factory.mktemp("demo"), TINY)


def test_demo_fold_trains_and_validates_in_original_geometry(demo):
    r = run_train_here(demo)
    assert r.returncode == 0, r.stderr
    exp = load_experiment(demo)
    layout = exp.layout
    fold_dir = layout.fold_dir("3d_fullres", 0)
    events = list(iter_jsonl(fold_dir / "metrics.jsonl"))
    assert all(validate_event(e) == [] for e in events)
    assert events[-1]["status"] == "completed"
    val_cases = read_json(layout.splits)[0]["val"]
    progress = [e for e in events if e["event"] == "progress" and e["stage"] == "validation"]
    assert progress[-1]["done"] == progress[-1]["total"] == len(val_cases)
    vdir = layout.validation("3d_fullres", 0)
    summary = read_json(vdir / "summary.json")
    assert {"metric_per_case", "mean", "foreground_mean"} <= set(summary)
    assert len(summary["metric_per_case"]) == len(val_cases)
    labels_dir = exp.dataset_path / "labelsTr"
    for case in val_cases:
        ref = nib.load(str(labels_dir / f"{case}.nii.gz"))
        pred = nib.load(str(vdir / f"{case}.nii.gz"))
        assert pred.shape == ref.shape
        assert np.allclose(pred.affine, ref.affine, atol=1e-4)
        probs = np.load(vdir / f"{case}.npz")["probabilities"]
        assert probs.dtype == np.float16 and probs.shape == (3,) + ref.shape
        assert np.allclose(probs.astype(np.float32).sum(0), 1, atol=0.02)
        assert np.array_equal(np.argmax(probs, 0), np.asarray(pred.dataobj)) or \
            (np.argmax(probs, 0) == np.asarray(pred.dataobj)).mean() > 0.99  # float16 ties
    # previews of the final validation (docs/pictures.md): fixed cases + the worst, whole volume
    previews = read_json(layout.previews("3d_fullres", 0) / "latest.json")
    assert previews["source"] == "validation" and previews["epoch"] is None
    roles = [i["role"] for i in previews["items"]]
    assert roles.count("fixed") == min(2, len(val_cases)) and set(roles) <= {"fixed", "worst"}
    from PIL import Image
    from trainer.reporting.previews import GT_RGB
    for item in previews["items"]:
        assert item["case"] in val_cases and item["png"].startswith("validation_")
        pixels = np.asarray(Image.open(layout.previews("3d_fullres", 0) / item["png"]).convert("RGB"))
        assert np.all(pixels == GT_RGB, axis=2).any()


def test_interrupted_validation_is_redone_alone_on_resume(demo):
    exp = load_experiment(demo)
    layout = exp.layout
    vdir = layout.validation("3d_fullres", 0)
    fold_dir = layout.fold_dir("3d_fullres", 0)
    if not (vdir / "summary.json").exists():
        pytest.skip("needs the previous test's fold")
    val_cases = read_json(layout.splits)[0]["val"]
    kept = vdir / f"{val_cases[0]}.nii.gz"
    kept_mtime = os.stat(kept).st_mtime_ns
    (vdir / "summary.json").unlink()
    for ext in (".nii.gz", ".npz"):
        (vdir / f"{val_cases[-1]}{ext}").unlink()
    n = len(list(iter_jsonl(fold_dir / "metrics.jsonl")))
    r = run_train_here(demo, "--resume")
    assert r.returncode == 0, r.stderr
    new = list(iter_jsonl(fold_dir / "metrics.jsonl"))[n:]
    assert not [e for e in new if e["event"] in ("iter", "epoch")]
    assert (vdir / "summary.json").exists() and (vdir / f"{val_cases[-1]}.npz").exists()
    assert os.stat(kept).st_mtime_ns == kept_mtime
