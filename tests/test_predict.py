"""Test-set prediction on the demo's rotated-affine cases: geometry, kept cases, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from contracts.experiment import load_experiment

ROOT = Path(__file__).resolve().parents[1]
FOLDS = [0, 1]


def trainer(*args, expect=0):
    r = subprocess.run([sys.executable, "-m", "trainer", *map(str, args)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600,
                       env={**__import__("os").environ, "FOLDWATCH_CPU_THREADS": "1"})
    assert r.returncode == expect, r.stdout + r.stderr
    return r


def here(*args, expect=0):
    """trainer() in this process (train_fixture.trainer_here): the refusals and reruns need
    no interpreter start; the prediction whose files are checked runs as a process."""
    from train_fixture import trainer_here
    r = trainer_here(*args)
    assert r.returncode == expect, r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict")
    data = tmp / "Dataset900_Demo"
    trainer("make-demo-data", data, "--train", "5", "--test", "2")
    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    cfg = dict(demo["configurations"]["3d_fullres"], tta_mirroring=False)
    # two folds: the fold ensemble is the same code for two as for five, at 2/5 of the passes
    exp = {"experiment": "p", "dataset": str(data), "results": str(tmp / "results"),
           "folds": FOLDS, "configurations": {"3d_fullres": cfg}}
    path = tmp / "p.yaml"
    path.write_text(yaml.safe_dump(exp))
    trainer("plan", "--experiment", path)
    return path


def _fake_final_checkpoints(path: Path, folds) -> None:
    """Untrained networks saved as the folds' final.pt: geometry does not need skill."""
    import torch

    from trainer.training.checkpoint import save_checkpoint
    from trainer.training.network import build_network
    from trainer.planning.plans import Plan

    exp = load_experiment(path)
    plan = Plan.load(exp.layout.plan("3d_fullres"))
    torch.manual_seed(0)
    for k in folds:
        net = build_network(plan)
        save_checkpoint(exp.layout.checkpoints("3d_fullres", k) / "final.pt",
                        {"model": net.state_dict(), "hparams": {"deep_supervision": True}})


def test_predict_keeps_each_input_geometry_and_scores_test_labels(planned):
    exp = load_experiment(planned)
    r = here("predict", "--experiment", planned, expect=2)      # no checkpoints yet
    assert "final.pt" in r.stderr and "Traceback" not in r.stderr
    _fake_final_checkpoints(planned, FOLDS)
    trainer("predict", "--experiment", planned, "--save-probabilities")
    out = exp.layout.predictions
    images = sorted((exp.dataset_path / "imagesTs").glob("*_0000.nii.gz"))
    assert len(images) == 2
    for img_path in images:
        case = img_path.name[:-len("_0000.nii.gz")]
        src, pred = nib.load(img_path), nib.load(out / f"{case}.nii.gz")
        assert pred.shape == src.shape
        np.testing.assert_allclose(pred.affine, src.affine, atol=1e-5)
        assert not np.allclose(src.affine[:3, :3], np.diag(np.diag(src.affine[:3, :3])))  # rotated
        assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2}
        with np.load(out / f"{case}.npz") as f:
            assert f["probabilities"].shape == (3, *src.shape)
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["metric_per_case"]) == 2
    previews = json.loads((out / "previews" / "latest.json").read_text())   # docs/pictures.md
    assert previews["source"] == "test" and len(previews["items"]) == 2
    from PIL import Image
    from trainer.reporting.previews import GT_RGB
    for item in previews["items"]:
        pixels = np.asarray(Image.open(out / "previews" / item["png"]).convert("RGB"))
        assert np.all(pixels == GT_RGB, axis=2).any() and item["dice"] is not None
    events = [json.loads(x) for x in (exp.layout.stage_dir("predict") / "metrics.jsonl").open()]
    assert [e["done"] for e in events if e["event"] == "progress"][-1] == 2
    # a second run keeps what is there; --overwrite redoes it
    before = (out / f"{case}.nii.gz").stat().st_mtime_ns
    r = here("predict", "--experiment", planned)
    assert "kept" in r.stderr and (out / f"{case}.nii.gz").stat().st_mtime_ns == before
    here("predict", "--experiment", planned, "--overwrite")
    assert (out / f"{case}.nii.gz").stat().st_mtime_ns != before


def test_predict_input_folder_without_images_is_a_dataset_error(planned, tmp_path):
    _fake_final_checkpoints(planned, FOLDS)
    r = here("predict", "--experiment", planned, "-i", tmp_path, "-o", tmp_path / "o", expect=3)
    assert "_0000" in r.stderr
