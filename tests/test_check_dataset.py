"""check-dataset reports every kind of problem of a broken copy in one run and exits 3."""

import gzip
import json
import shutil

import nibabel as nib
import numpy as np

from data_helpers import copy_dataset, small_demo, trainer  # noqa: F401  (fixture)


def _save_like(src, data, dst, affine=None):
    img = nib.load(str(src))
    out = nib.Nifti1Image(data, img.affine if affine is None else affine, img.header)
    out.set_data_dtype(data.dtype)
    nib.save(out, str(dst))


def test_clean_demo_passes(small_demo):
    r = trainer("check-dataset", small_demo)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OK") and len(r.stdout.strip().splitlines()) == 1


def test_broken_copy_reports_every_problem(small_demo, tmp_path):
    d = copy_dataset(small_demo, tmp_path / "broken")
    tr, lab = d / "imagesTr", d / "labelsTr"
    # two channels declared; every case gets a second channel except Demo_001
    meta = json.loads((d / "dataset.json").read_text())
    meta["channel_names"] = {"0": "CT", "1": "CT2"}
    meta["numTraining"] = 9
    (d / "dataset.json").write_text(json.dumps(meta))
    for folder in (tr, d / "imagesTs"):
        for p in folder.glob("*_0000.nii.gz"):
            shutil.copy(p, p.with_name(p.name.replace("_0000", "_0001")))
    (lab / "Demo_000.nii.gz").unlink()                                   # missing label
    (tr / "Demo_001_0001.nii.gz").unlink()                               # missing channel
    seg = np.asarray(nib.load(str(lab / "Demo_002.nii.gz")).dataobj)
    _save_like(lab / "Demo_002.nii.gz", seg[:-3], lab / "Demo_002.nii.gz")  # shape mismatch
    aff = nib.load(str(lab / "Demo_003.nii.gz")).affine.copy()
    aff[:3, 3] += 5.0
    seg = np.asarray(nib.load(str(lab / "Demo_003.nii.gz")).dataobj)
    _save_like(lab / "Demo_003.nii.gz", seg, lab / "Demo_003.nii.gz", aff)  # affine mismatch
    seg = np.asarray(nib.load(str(lab / "Demo_004.nii.gz")).dataobj).copy()
    seg[0, 0, 0] = 7
    _save_like(lab / "Demo_004.nii.gz", seg, lab / "Demo_004.nii.gz")       # undeclared value
    raw = gzip.decompress((tr / "Demo_005_0000.nii.gz").read_bytes())
    (tr / "Demo_005_0000.nii.gz").write_bytes(gzip.compress(raw[:200]))      # unreadable
    img = np.asarray(nib.load(str(tr / "Demo_006_0001.nii.gz")).dataobj).astype(np.float32)
    img[3, 4, 5] = np.nan
    _save_like(tr / "Demo_006_0001.nii.gz", img, tr / "Demo_006_0001.nii.gz")  # NaN

    r = trainer("check-dataset", d)
    assert r.returncode == 3, r.stdout + r.stderr
    err = r.stderr
    assert "Traceback" not in err
    expect = {
        "Demo_000": "label file is missing",
        "Demo_001": "channel 1 is missing",
        "Demo_002": "shape",
        "Demo_003": "affine differs",
        "Demo_004": "[7] not declared",
        "Demo_005": "not a readable NIfTI",
        "Demo_006": "NaN",
    }
    lines = err.splitlines()
    for case, what in expect.items():
        assert any(case in line and what in line for line in lines), f"{case}: {what!r} not in\n{err}"
    assert any("numTraining is 9" in line for line in lines)
    assert not any("Demo_007" in line for line in lines)        # the clean case is not blamed
    assert sum("Demo_001_0001" in line for line in lines) == 1   # one problem, reported once


def test_missing_or_garbled_dataset_json(tmp_path, small_demo):
    r = trainer("check-dataset", tmp_path / "nowhere")
    assert r.returncode == 3 and "not found" in r.stderr and "Traceback" not in r.stderr
    d = copy_dataset(small_demo, tmp_path / "garbled")
    (d / "dataset.json").write_text("{ not json")
    r = trainer("check-dataset", d)
    assert r.returncode == 2 and "dataset.json" in r.stderr and "not valid JSON" in r.stderr
    (d / "dataset.json").write_text(json.dumps({"labels": {"background": 0}, "file_ending": ".nii.gz"}))
    r = trainer("check-dataset", d)
    assert r.returncode == 2 and "channel_names" in r.stderr
