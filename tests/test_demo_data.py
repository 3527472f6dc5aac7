"""make-demo-data: nnU-Net layout, CT-like properties, deterministic by seed, refuses to overwrite."""

import json

import nibabel as nib
import numpy as np

from data_helpers import small_demo, trainer  # noqa: F401  (fixture)


def test_layout_and_dataset_json(small_demo):
    meta = json.loads((small_demo / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "CT"}
    assert meta["labels"] == {"background": 0, "organ": 1, "lesion": 2}
    assert meta["numTraining"] == 8 and meta["file_ending"] == ".nii.gz"
    assert len(list((small_demo / "imagesTr").glob("*_0000.nii.gz"))) == 8
    assert len(list((small_demo / "labelsTr").glob("*.nii.gz"))) == 8
    assert len(list((small_demo / "imagesTs").glob("*_0000.nii.gz"))) == 2
    assert len(list((small_demo / "labelsTs").glob("*.nii.gz"))) == 2   # kept for scoring


def test_behaves_like_ct(small_demo):
    shapes, spacings = set(), []
    for img_path in sorted((small_demo / "imagesTr").glob("*.nii.gz")):
        img = nib.load(str(img_path))
        lab = nib.load(str(small_demo / "labelsTr" / img_path.name.replace("_0000", "")))
        data, seg = np.asarray(img.dataobj), np.asarray(lab.dataobj)
        assert np.allclose(img.affine, lab.affine)
        zooms = img.header.get_zooms()
        assert zooms[2] / zooms[0] > 2.5                           # thick slices
        direction = img.affine[:3, :3] / np.asarray(zooms)
        off = np.abs(direction - np.diag(np.diag(direction))).max()
        assert off > 0.1                                           # rotated, not axis aligned
        assert nib.aff2axcodes(img.affine) != ("R", "A", "S")      # needs reorientation
        assert set(np.unique(seg)) == {0, 1, 2}
        assert (seg == 2).sum() < (seg == 1).sum()                 # lesion smaller than the organ
        assert (seg == 2).sum() >= 150                             # but learnable
        air = data[:3, :3, :].mean()
        assert -1100 < air < -900                                  # HU: air around the body
        organ, lesion = data[seg == 1].mean(), data[seg == 2].mean()
        assert abs(organ - lesion) > 60                            # distinct intensities
        body = data[(seg == 0) & (data > -500)].mean()
        assert organ - body > 50                                   # organ stands out too
        assert data[seg == 1].std() > 5                            # noisy
        shapes.add(data.shape)
        spacings.append(zooms)
    assert len(shapes) > 4                                         # varies case to case
    assert len({round(float(s[0]), 3) for s in spacings}) > 4


def test_deterministic_by_seed(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        r = trainer("make-demo-data", tmp_path / name, "--train", "1", "--test", "0", "--seed", seed)
        assert r.returncode == 0, r.stderr
    load = lambda n: np.asarray(nib.load(str(tmp_path / n / "imagesTr/Demo_000_0000.nii.gz")).dataobj)
    assert np.array_equal(load("a"), load("b"))
    assert load("a").shape != load("c").shape or not np.array_equal(load("a"), load("c"))


def test_refuses_non_empty_folder_without_force(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    r = trainer("make-demo-data", out, "--train", "1", "--test", "0")
    assert r.returncode == 2
    assert "not empty" in r.stderr and "--force" in r.stderr and "Traceback" not in r.stderr
    assert not (out / "dataset.json").exists()
    r = trainer("make-demo-data", out, "--train", "1", "--test", "0", "--force")
    assert r.returncode == 0, r.stderr
    assert (out / "dataset.json").exists() and (out / "mine.txt").read_text() == "keep"
