"""Region-based labels (nnU-Net regions_class_order): read, trained with sigmoid outputs,
exported by regions_class_order and scored per region."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from contracts.errors import ConfigError
from contracts.experiment import load_experiment
from contracts.jsonio import read_json
from data_helpers import small_demo  # noqa: F401  (fixture)
from data_helpers import region_dataset, trainer_in_process, write_experiment
from train_fixture import train_in_process
from trainer.data.datasets import load_dataset
from trainer.data.labelmaps import to_label_map
from trainer.training.loss import region_dice_bce, region_targets



def test_region_labels_are_read_and_checked(small_demo, tmp_path):
    info = load_dataset(region_dataset(small_demo, tmp_path / "ok"))
    assert info.regions == {"organ incl. lesion": [1, 2], "lesion": [2]}
    assert info.regions_class_order == [1, 2]
    assert sorted(info.labels.values()) == [0, 1, 2]
    with pytest.raises(ConfigError, match="regions_class_order"):
        load_dataset(region_dataset(small_demo, tmp_path / "no_order", order=None))
    with pytest.raises(ConfigError, match="positive label values"):
        load_dataset(region_dataset(small_demo, tmp_path / "bad",
                                     {"background": 0, "a": [1, "x"]}, (1,)))


def test_region_loss_targets_and_export_order():
    target = torch.tensor([[0, 1, 2, 2]])
    t = region_targets(target, [[1, 2], [2]])
    assert t.tolist() == [[[0, 1, 1, 1], [0, 0, 1, 1]]]
    perfect = (t * 40 - 20)                                    # logits matching the targets
    assert float(region_dice_bce(perfect, target, [[1, 2], [2]])) < 1e-6
    assert float(region_dice_bce(-perfect, target, [[1, 2], [2]])) > 1.5
    probs = np.array([[0.9, 0.9, 0.2], [0.1, 0.7, 0.8]])      # (regions, voxels)
    # region 2 is painted after region 1 and wins where both are > 0.5
    assert to_label_map(probs, [0, 1, 2], [1, 2]).tolist() == [1, 2, 2]


def test_region_based_fold_trains_validates_and_scores_regions(small_demo, tmp_path, monkeypatch):
    monkeypatch.setenv("FOLDWATCH_CPU_THREADS", "1")
    data = region_dataset(small_demo, tmp_path / "Dataset901_Regions")
    cfg = {"2d": {"patch_size": [48, 48], "batch_size": 2, "epochs": 1,
                  "iterations_per_epoch": 3, "val_iterations": 1, "base_features": 4,
                  "max_features": 16, "num_workers": 0, "tta_mirroring": False}}
    exp = write_experiment(tmp_path / "e.yaml", data, cfg)
    for args in (("plan", "--experiment", exp, "--skip-check"),
                 ("preprocess", "--experiment", exp, "--configuration", "2d")):
        assert trainer_in_process(*args) == 0
    layout = load_experiment(exp).layout
    plan = read_json(layout.plan("2d"))
    assert plan["regions"] == {"organ incl. lesion": [1, 2], "lesion": [2]}
    assert train_in_process(exp, "2d") == 0
    ckpt = torch.load(layout.checkpoints("2d", 0) / "final.pt", weights_only=True)
    heads = [v for k, v in ckpt["model"].items() if k.startswith("output_block") and k.endswith("weight")]
    assert heads and heads[0].shape[0] == 2                    # one sigmoid output per region
    vdir = layout.validation("2d", 0)
    summary = read_json(vdir / "summary.json")
    assert set(summary["mean"]) == {"(1, 2)", "(2,)"}
    for case in read_json(layout.splits)[0]["val"]:
        probs = np.load(vdir / f"{case}.npz")["probabilities"].astype(np.float32)
        pred = np.asarray(nib.load(str(vdir / f"{case}.nii.gz")).dataobj)
        assert probs.shape == (2,) + pred.shape and probs.min() >= 0 and probs.max() <= 1
        clear = (np.abs(probs - 0.5) > 1e-3).all(0)             # float16 storage blurs 0.5
        assert np.array_equal(pred[clear], to_label_map(probs, [0, 1, 2], [1, 2])[clear])
        assert set(np.unique(pred)) <= {0, 1, 2}
    epochs = [json.loads(line) for line in
              (layout.fold_dir("2d", 0) / "metrics.jsonl").read_text().splitlines()
              if '"epoch"' in line and '"val_dice_per_class"' in line]
    assert len(epochs[-1]["val_dice_per_class"]) == 2
