"""PNG/JPEG image + mask folders (Pytorch-UNet layout): read, checked, split by percentage, trained."""

import numpy as np
import pytest
from PIL import Image

from contracts.errors import DatasetError
from contracts.experiment import load_experiment
from contracts.jsonio import read_json
from data_helpers import trainer, write_experiment
from train_fixture import train_in_process
from trainer.data import slices
from trainer.data.datasets import load_dataset


def _make(root, n=8, rng=None):
    """RGB images with a bright disk; 0/255 grayscale masks, some named <stem>_mask.png."""
    rng = rng or np.random.default_rng(0)
    (root / "imgs").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:40, :48]
    for i in range(n):
        cy, cx, r = rng.uniform(12, 28), rng.uniform(12, 36), rng.uniform(5, 9)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img = rng.normal(60, 15, (40, 48, 3)) + 120 * disk[..., None]
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(root / "imgs" / f"c{i:02d}.jpg")
        name = f"c{i:02d}_mask.png" if i % 2 else f"c{i:02d}.png"
        Image.fromarray((disk * 255).astype(np.uint8), "L").save(root / "masks" / name)
    return root


def test_masks_palette_grayscale_and_rgb_values(tmp_path):
    pal = Image.fromarray(np.array([[0, 1], [2, 2]], np.uint8), "P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    pal.save(tmp_path / "p.png")
    assert slices.read_mask_values(tmp_path / "p.png")[:, :, 0].T.tolist() == [[0, 1], [2, 2]]
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 1] = [255, 0, 0]
    Image.fromarray(rgb, "RGB").save(tmp_path / "c.png")
    v = slices.read_mask_values(tmp_path / "c.png")
    assert v.shape == (3, 2, 1) and v[1, 0, 0] == 255 << 16 and v.sum() == 255 << 16
    img, affine = slices.read_image(tmp_path / "c.png")
    assert img.shape == (3, 2, 1, 3) and np.array_equal(affine, np.eye(4))


def test_slice_folder_is_read_with_clear_problems(tmp_path):
    root = _make(tmp_path / "ds", n=4)
    info = load_dataset(root)
    assert [c.case_id for c in info.cases] == ["c00", "c01", "c02", "c03"]
    assert info.cases[1].label.name == "c01_mask.png"
    assert info.channel_names == ["R", "G", "B"] and info.labels == {"background": 0, "value 255": 1}
    r = trainer("check-dataset", root)
    assert r.returncode == 0, r.stdout + r.stderr
    (root / "masks" / "c02.png").unlink()
    (root / "masks" / "stray.png").write_bytes(b"not a png")
    problems = load_dataset(root).problems
    assert any("c02.jpg: no mask" in p for p in problems)
    assert any("stray.png: mask without an image" in p for p in problems)
    with pytest.raises(DatasetError, match="stray.png: not a readable image"):
        slices.read_mask_values(root / "masks" / "stray.png")


def test_slice_dataset_splits_by_percentage_and_trains(tmp_path, monkeypatch):
    from trainer.cli import main     # plan/preprocess in this process; training runs for real
    monkeypatch.setenv("FOLDWATCH_CPU_THREADS", "1")
    root = _make(tmp_path / "ds", n=8)
    cfg = {"2d": {"patch_size": [32, 32], "batch_size": 2, "epochs": 1,
                  "iterations_per_epoch": 3, "val_iterations": 1, "base_features": 4,
                  "max_features": 16, "num_workers": 0, "tta_mirroring": False}}
    exp = write_experiment(tmp_path / "e.yaml", root, cfg, validation_percent=25)
    assert load_experiment(exp).folds == [0]
    assert main(["plan", "--experiment", str(exp)]) == 0
    layout = load_experiment(exp).layout
    splits = read_json(layout.splits)
    assert len(splits) == 1 and len(splits[0]["val"]) == 2 and len(splits[0]["train"]) == 6
    assert main(["preprocess", "--experiment", str(exp), "--configuration", "2d"]) == 0
    assert train_in_process(exp, "2d") == 0
    summary = read_json(layout.validation("2d", 0) / "summary.json")
    assert [c["case"] for c in summary["metric_per_case"]] == splits[0]["val"]
    for c in summary["metric_per_case"]:                       # scored against the PNG mask
        stem = c["case"]
        mask = next((root / "masks").glob(f"{stem}*.png"))
        assert c["metrics"]["1"]["n_ref"] == int((np.asarray(Image.open(mask)) > 0).sum())
    # test/ images are predicted as NIfTI and as masks in the dataset's own values (0/255)
    (root / "test").mkdir()
    Image.open(root / "imgs" / "c00.jpg").save(root / "test" / "t00.png")
    assert main(["predict", "--experiment", str(exp)]) == 0
    out = Image.open(layout.predictions / "t00.png")
    assert out.size == (48, 40) and set(np.unique(np.asarray(out))) <= {0, 255}
    assert (layout.predictions / "t00.nii.gz").exists()
