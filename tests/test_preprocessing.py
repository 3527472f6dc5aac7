"""preprocess: cache format, geometry round trip, concurrent starts, skipping up-to-date cases."""

import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from contracts.experiment import load_experiment
from contracts.jsonio import iter_jsonl
from data_helpers import ROOT, env, small_demo, trainer, write_experiment  # noqa: F401
from trainer.data.geometry import (labels_to_original, load_images, preprocess_arrays,
                              preprocess_image, save_nifti, to_original)
from trainer.planning.plans import ChannelNorm, Plan
from trainer.planning.preprocessed import list_cases, load_case


@pytest.fixture(scope="module")
def planned(small_demo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pre")
    exp = write_experiment(tmp / "e.yaml", small_demo, {
        "3d_fullres": {"base_features": 8, "max_features": 64},
        "2d": {"base_features": 8, "max_features": 64}})
    r = trainer("plan", "--experiment", exp, "--skip-check")
    assert r.returncode == 0, r.stderr
    return exp


def _plan(spacing, labels=None):
    return Plan("3d_fullres", 3, list(spacing), [16, 32, 32], 2, [1, 1, 1], [], [], [],
                [ChannelNorm("CT", "ct", [-50.0, 300.0], 120.0, 40.0)],
                labels or {"background": 0, "organ": 1, "lesion": 2}, ["CT"])


def _case(small_demo, n=0):
    images, affine = load_images([small_demo / "imagesTr" / f"Demo_{n:03d}_0000.nii.gz"])
    lab = nib.load(str(small_demo / "labelsTr" / f"Demo_{n:03d}.nii.gz"))
    return images, affine, np.asarray(lab.dataobj).astype(np.int16)


def test_round_trip_at_native_spacing_is_exact(small_demo, tmp_path):
    images, affine, seg = _case(small_demo)
    from trainer.data.geometry import canonical_spacing, orientation_transform
    plan = _plan(canonical_spacing(affine, orientation_transform(affine)))
    data, pseg, props = preprocess_arrays(images, affine, plan, seg)
    assert data.dtype == np.float32 and data.shape[1:] == pseg.shape
    assert pseg.shape != seg.shape                                   # reoriented + cropped
    back = labels_to_original(pseg, props)
    assert back.shape == seg.shape and np.array_equal(back, seg)
    onehot = np.eye(3, dtype=np.float32)[pseg].transpose(3, 0, 1, 2)
    probs = to_original(onehot, props)
    assert probs.shape == (3,) + seg.shape
    assert np.allclose(probs.sum(0), 1, atol=1e-5)
    assert np.array_equal(probs.argmax(0), seg)
    save_nifti(back, props, tmp_path / "x.nii.gz")
    out = nib.load(str(tmp_path / "x.nii.gz"))
    assert out.shape == seg.shape and np.allclose(out.affine, affine, atol=1e-5)
    assert np.array_equal(np.asarray(out.dataobj), seg)


def test_round_trip_through_resampling_within_tolerance(small_demo):
    images, affine, seg = _case(small_demo, 1)
    plan = _plan([2.0, 1.2, 1.2])                                    # another grid
    data, pseg, props = preprocess_arrays(images, affine, plan, seg)
    back = labels_to_original(pseg, props)
    assert back.shape == seg.shape
    for k in (1, 2):                                                 # documented: Dice >= 0.85
        dice = 2 * ((back == k) & (seg == k)).sum() / ((back == k).sum() + (seg == k).sum())
        assert dice > 0.85, (k, dice)


def test_cache_format_and_inference_path(planned, small_demo):
    r = trainer("preprocess", "--experiment", planned, "--configuration", "3d_fullres",
                "--workers", "2")
    assert r.returncode == 0, r.stderr
    layout = load_experiment(planned).layout
    folder = layout.preprocessed("3d_fullres")
    plan = Plan.load(layout.plan("3d_fullres"))
    assert list_cases(folder) == [f"Demo_{i:03d}" for i in range(8)]
    data, seg, props = load_case(folder, "Demo_002")
    assert data.dtype == np.float32 and data.ndim == 4 and data.shape[0] == 1
    assert seg.dtype == np.uint8 and seg.shape == data.shape[1:]
    assert props["shape"] == list(seg.shape) and np.allclose(props["spacing"], plan.spacing)
    assert set(np.unique(seg)) == {0, 1, 2}
    for label, locs in props["class_locations"].items():
        locs = np.asarray(locs)
        assert 0 < len(locs) <= 1000 and (seg[tuple(locs.T)] == int(label)).all()
    assert abs(float(data[0][seg > 0].mean())) < 1.5                 # foreground z-scored
    assert props["original"]["shape"] == list(nib.load(props["label_file"]).shape)
    # predict's path: the same arrays from the image files alone
    again, p2 = preprocess_image(props["image_files"], plan)
    assert np.allclose(again, data, atol=1e-4) and p2["crop_box"] == props["crop_box"]
    ev = list(iter_jsonl(layout.stage_dir("preprocess-3d_fullres") / "metrics.jsonl"))
    prog = [e for e in ev if e["event"] == "progress"]
    assert prog[-1]["done"] == prog[-1]["total"] == 8 and ev[-1]["status"] == "completed"


def test_concurrent_starts_are_safe_and_the_second_run_skips(planned):
    layout = load_experiment(planned).layout
    cmd = [sys.executable, "-m", "trainer", "preprocess", "--experiment", str(planned),
           "--configuration", "2d", "--workers", "1"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    log = layout.stage_dir("preprocess-2d") / "metrics.jsonl"
    summaries = sorted(e["skipped"] for e in iter_jsonl(log) if e["event"] == "summary")
    if codes == [0, 73]:        # the stage's run lock: the second refused, wrote nothing
        busy = outs[[p.returncode for p in procs].index(73)][1]
        assert "already in use" in busy and "Traceback" not in busy
        assert summaries == [0]
        assert sum(e["event"] == "start" for e in iter_jsonl(log)) == 1
    else:                       # the first had finished before the second started
        assert codes == [0, 0] and summaries == [0, 8], outs
    folder = layout.preprocessed("2d")
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]
    data, seg, props = load_case(folder, "Demo_000")
    assert data.shape[1:] == seg.shape
    # a changed source file is redone, the rest skipped
    src = props["image_files"][0]
    os.utime(src, ns=(os.stat(src).st_atime_ns, os.stat(src).st_mtime_ns + 10**9))
    r = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    last = [e for e in iter_jsonl(log) if e["event"] == "summary"][-1]
    assert last["skipped"] == 7


def test_preprocess_without_plan_is_a_clear_error(small_demo, tmp_path):
    exp = write_experiment(tmp_path / "e.yaml", small_demo)
    r = trainer("preprocess", "--experiment", exp, "--configuration", "3d_fullres")
    assert r.returncode == 2 and "no plan yet" in r.stderr and "Traceback" not in r.stderr
    r = trainer("preprocess", "--experiment", exp, "--configuration", "2d")
    assert r.returncode == 2 and "no configuration '2d'" in r.stderr


def test_canonical_order_matches_nibabel_for_permuted_axes(tmp_path):
    """A sagittal-like file (axes permuted and flipped) ends up as as_closest_canonical, in z,y,x."""
    from trainer.data.geometry import orientation_transform, to_canonical
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 3, (7, 9, 11)).astype(np.int16)
    affine = np.zeros((4, 4))
    affine[:3, :3] = [[0, 0, -0.9], [1.5, 0, 0], [0, -3.0, 0]]   # i->A, j->-S, k->-R
    affine[:3, 3], affine[3, 3] = [10, -20, 30], 1
    img = nib.Nifti1Image(arr, affine)
    canon = nib.as_closest_canonical(img)
    ours = to_canonical(arr, orientation_transform(affine))
    assert np.array_equal(ours, np.asarray(canon.dataobj).transpose(2, 1, 0))
    plan = _plan([3.0, 1.5, 0.9])
    images = arr[None].astype(np.float32) * 100 - 500 + 1000 * (arr[None] > 0)
    data, seg, props = preprocess_arrays(images, affine, plan, arr)
    assert props["spacing"] == [3.0, 1.5, 0.9] and np.allclose(props["original"]["spacing_zyx"], [3.0, 1.5, 0.9])
    assert np.array_equal(labels_to_original(seg, props), arr)
    save_nifti(labels_to_original(seg, props), props, tmp_path / "p.nii.gz")
    assert np.allclose(nib.load(str(tmp_path / "p.nii.gz")).affine, affine)
