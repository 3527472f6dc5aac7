"""Reading datasets: nnU-Net v2 raw layout, MSD/MONAI datalist JSON, folders of images."""

import json

import pytest

from contracts.errors import ConfigError, DatasetError
from data_helpers import small_demo, trainer, write_experiment  # noqa: F401  (fixture)
from trainer.data.datasets import cases_in_folder, load_dataset


def test_nnunet_layout(small_demo):
    info = load_dataset(small_demo)
    assert info.root == small_demo and info.file_ending == ".nii.gz"
    assert info.labels == {"background": 0, "organ": 1, "lesion": 2}
    assert info.channel_names == ["CT"] and info.num_training == 8
    assert [c.case_id for c in info.cases] == [f"Demo_{i:03d}" for i in range(8)]
    c = info.cases[0]
    assert c.images == [small_demo / "imagesTr" / "Demo_000_0000.nii.gz"]
    assert c.label == small_demo / "labelsTr" / "Demo_000.nii.gz"
    assert [t.case_id for t in info.test_cases] == ["Demo_008", "Demo_009"]
    assert all(t.label and t.label.parent.name == "labelsTs" for t in info.test_cases)
    assert info.problems == []


def test_msd_datalist(small_demo, tmp_path):
    base = small_demo.parent
    rel = lambda p: str(p.relative_to(base))
    info = load_dataset(small_demo)
    datalist = {
        "labels": {"0": "background", "1": "organ", "2": "lesion"},
        "modality": {"0": "CT"},
        "training": [{"image": rel(c.images[0]), "label": rel(c.label)} for c in info.cases],
        "test": [rel(c.images[0]) for c in info.test_cases],
    }
    path = base / "datalist.json"
    path.write_text(json.dumps(datalist))
    msd = load_dataset(path)
    assert msd.labels == info.labels and msd.channel_names == ["CT"]
    assert [c.case_id for c in msd.cases] == info.case_ids
    assert [c.images for c in msd.cases] == [c.images for c in info.cases]
    assert [c.label for c in msd.cases] == [c.label for c in info.cases]
    assert len(msd.test_cases) == 2 and msd.problems == []
    assert trainer("check-dataset", path).returncode == 0
    exp = write_experiment(tmp_path / "e.yaml", path)
    r = trainer("plan", "--experiment", exp, "--skip-check")
    assert r.returncode == 0, r.stderr


def test_datalist_problems_are_named(tmp_path):
    (tmp_path / "dl.json").write_text(json.dumps({
        "labels": {"0": "background", "1": "x"}, "modality": {"0": "MR"},
        "training": [{"image": "a.nii.gz"}, {"label": "b.nii.gz"}]}))
    info = load_dataset(tmp_path / "dl.json")
    assert any("training[0]" in p and "without 'label'" in p for p in info.problems)
    assert any("training[1]" in p for p in info.problems)
    r = trainer("check-dataset", tmp_path / "dl.json")
    assert r.returncode == 3 and "a.nii.gz" in r.stderr


def test_garbled_dataset_json_and_labels(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    with pytest.raises(DatasetError, match="no dataset.json"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text("[1, 2")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_dataset(tmp_path)
    base = {"channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}
    for labels, msg in (({"organ": 1}, "background"), ({"background": 0, "a": 2}, "consecutive"),
                        ({"background": 0, "a": "x"}, "integer")):
        (tmp_path / "dataset.json").write_text(json.dumps(base | {"labels": labels}))
        with pytest.raises(ConfigError, match=msg):
            load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "CT"}, "labels": {"background": 0}, "file_ending": ".png"}))
    with pytest.raises(ConfigError, match="file_ending"):
        load_dataset(tmp_path)


def test_cases_in_folder(tmp_path):
    for name in ("a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz", "b_0001.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    cases = cases_in_folder(tmp_path, 2)
    assert [c.case_id for c in cases] == ["a", "b"] and len(cases[0].images) == 2
    assert cases[0].label is None
    (tmp_path / "b_0001.nii.gz").unlink()
    (tmp_path / "stray.nii.gz").write_bytes(b"")
    with pytest.raises(DatasetError) as e:
        cases_in_folder(tmp_path, 2)
    text = str(e.value)
    assert "b_0001.nii.gz" in text and "channel 1 is missing" in text and "stray.nii.gz" in text


def test_msd_4d_multichannel_images(small_demo, tmp_path):
    """MSD ships multi-modal cases as one 4D file (x, y, z, channel): read, checked, preprocessed."""
    import nibabel as nib
    import numpy as np

    from trainer.data.geometry import preprocess_image
    from trainer.planning.plans import ChannelNorm, Plan
    info = load_dataset(small_demo)
    entries = []
    for c in info.cases[:5]:
        img = nib.load(str(c.images[0]))
        x = np.asarray(img.dataobj).astype(np.float32)
        four = np.stack([x, 2 * x + 5], -1)
        nib.save(nib.Nifti1Image(four, img.affine), str(tmp_path / f"{c.case_id}.nii.gz"))
        entries.append({"image": f"{c.case_id}.nii.gz", "label": str(c.label)})
    (tmp_path / "dl.json").write_text(json.dumps({
        "labels": {"0": "background", "1": "organ", "2": "lesion"},
        "modality": {"0": "CT", "1": "MR"}, "training": entries}))
    r = trainer("check-dataset", tmp_path / "dl.json")
    assert r.returncode == 0, r.stderr
    plan = Plan("3d_fullres", 3, [3.0, 1.0, 1.0], [16, 32, 32], 2, [1, 1, 1], [], [], [],
                [ChannelNorm("CT", "ct", [-50.0, 300.0], 120.0, 40.0), ChannelNorm("MR", "zscore")],
                {"background": 0, "organ": 1, "lesion": 2}, ["CT", "MR"])
    data, props = preprocess_image([tmp_path / "Demo_000.nii.gz"], plan)
    # z-scored per case before resampling (as nnU-Net): the mean after it is near, not at, 0
    assert data.shape[0] == 2 and abs(float(data[1].mean())) < 0.05
    exp = write_experiment(tmp_path / "e.yaml", tmp_path / "dl.json")
    r = trainer("plan", "--experiment", exp)
    assert r.returncode == 0, r.stderr
    r = trainer("preprocess", "--experiment", exp, "--configuration", "3d_fullres")
    assert r.returncode == 0, r.stderr
