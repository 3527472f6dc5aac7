"""nnU-Net's own code as the oracle: resampling, splits and metrics on the same arrays.

Needs the optional extra `nnunet` (nnunetv2==2.8.1). Only the modules that do not pull
torchvision are imported (torchvision fails to load next to the CPU build of torch).
"""

import sys

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

_TORCHVISION_BEFORE = "torchvision" in sys.modules
try:
    from nnunetv2.preprocessing.resampling import default_resampling as nn_resampling
    from nnunetv2.utilities.crossval_split import generate_crossval_split
    from nnunetv2.evaluation import evaluate_predictions as nn_eval
except ImportError as e:   # the optional extra is not installed
    pytest.skip(f"nnunetv2 is not installed ({e}); `pip install -e '.[nnunet]'` runs these "
                "comparisons", allow_module_level=True)

from data_helpers import small_demo  # noqa: F401  (fixture)
from trainer.data import resampling as ours
from trainer.data.splits import kfold_splits
from trainer.evaluation.metrics import case_metrics, summarize

# (current spacing, target spacing, shape): anisotropic source, anisotropic target only,
# isotropic, two equally coarse axes (not separated), upsampling across slices.
CASES = [
    ([3.0, 0.8, 0.8], [1.5, 1.0, 1.0], (12, 30, 28)),
    ([1.0, 0.5, 0.5], [4.0, 0.5, 0.5], (20, 22, 24)),
    ([1.0, 1.0, 1.2], [0.7, 1.3, 1.1], (14, 15, 16)),
    ([0.24, 1.25, 1.25], [1.0, 1.0, 1.0], (9, 10, 11)),
    ([0.8, 3.5, 0.8], [0.8, 0.7, 0.8], (16, 6, 18)),
]


def test_only_torchvision_free_modules_are_imported():
    if _TORCHVISION_BEFORE:
        pytest.skip("torchvision was already imported by an earlier test; cannot tell")
    assert "torchvision" not in sys.modules


def _labels(rng, shape, n):
    """Smooth blobs of n labels (ties and multi-label junctions occur)."""
    field = gaussian_filter(rng.normal(size=shape), 1.5)
    edges = np.quantile(field, np.linspace(0, 1, n + 1)[1:-1])
    return np.digitize(field, edges).astype(np.uint8)


@pytest.mark.parametrize("current,target,shape", CASES)
def test_resampling_matches_nnunet(current, target, shape):
    rng = np.random.default_rng(sum(shape))
    assert ours.new_shape(shape, current, target) == \
        list(nn_resampling.compute_new_shape(shape, current, target))
    new = ours.new_shape(shape, current, target)
    want_axis = nn_resampling.determine_do_sep_z_and_axis(None, current, target)
    assert ours.separate_axis(current, target) == (want_axis[1] if want_axis[0] else None)

    data = gaussian_filter(rng.normal(size=(2, *shape)), (0, 1, 1, 1)).astype(np.float32) * 3
    want = nn_resampling.resample_data_or_seg_to_shape(
        data, new, current, target, is_seg=False, order=3, order_z=0, force_separate_z=None)
    got = ours.resample_image(data, new, current, target)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)

    seg = _labels(rng, shape, 5)
    want = nn_resampling.resample_data_or_seg_to_shape(
        seg[None], new, current, target, is_seg=True, order=1, order_z=0, force_separate_z=None)[0]
    got = ours.resample_labels(seg, new, current, target)
    assert got.dtype == seg.dtype and np.array_equal(got, want)

    probs = rng.dirichlet(np.ones(3), size=shape).transpose(3, 0, 1, 2).astype(np.float32)
    want = nn_resampling.resample_data_or_seg_to_shape(
        probs, new, current, target, is_seg=False, order=1, order_z=0, force_separate_z=None)
    np.testing.assert_allclose(ours.resample_probabilities(probs, new, current, target), want,
                               rtol=0, atol=1e-5)
    # export direction: back to the source grid
    want = nn_resampling.resample_data_or_seg_to_shape(
        want, shape, target, current, is_seg=False, order=1, order_z=0, force_separate_z=None)
    got = ours.resample_probabilities(ours.resample_probabilities(probs, new, current, target),
                                      shape, target, current)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_wide_label_sets_resample_exactly():
    """130 labels (int16 cache) through the per-label path, against nnU-Net."""
    rng = np.random.default_rng(130)
    shape, current, target = (10, 24, 24), [2.5, 0.9, 0.9], [2.5, 1.3, 1.3]
    seg = _labels(rng, shape, 131).astype(np.int16)
    assert seg.max() == 130
    new = ours.new_shape(shape, current, target)
    want = nn_resampling.resample_data_or_seg_to_shape(
        seg[None], new, current, target, is_seg=True, order=1, order_z=0, force_separate_z=None)[0]
    assert np.array_equal(ours.resample_labels(seg, new, current, target), want)


def test_preprocessing_resamples_like_nnunet(small_demo):
    """The demo case through our preprocessing == nnU-Net's functions on our cropped arrays."""
    import nibabel as nib

    from trainer.data import geometry
    from trainer.planning.plans import ChannelNorm, Plan
    images, affine = geometry.load_images([small_demo / "imagesTr" / "Demo_001_0000.nii.gz"])
    seg = np.asarray(nib.load(str(small_demo / "labelsTr" / "Demo_001.nii.gz")).dataobj)
    plan = Plan("3d_fullres", 3, [1.6, 1.1, 1.1], [16, 32, 32], 2, [1, 1, 1], [], [], [],
                [ChannelNorm("CT", "ct", [-50.0, 300.0], 120.0, 40.0)],
                {"background": 0, "organ": 1, "lesion": 2}, ["CT"])
    data, pseg, props = geometry.preprocess_arrays(images, affine, plan, seg.astype(np.int16))
    transform = geometry.orientation_transform(affine)
    canon = geometry.crop(geometry.to_canonical(images, transform), props["crop_box"])
    canon_seg = geometry.crop(geometry.to_canonical(seg.astype(np.uint8), transform),
                              props["crop_box"])
    spacing = props["original"]["spacing_zyx"]
    assert max(spacing) / min(spacing) > 3                      # thick slices: separate z
    want = nn_resampling.resample_data_or_seg_to_spacing(
        geometry.normalize(canon, plan), spacing, plan.spacing, is_seg=False, order=3,
        order_z=0, force_separate_z=None)
    np.testing.assert_allclose(data, want, rtol=0, atol=1e-5)
    want_seg = nn_resampling.resample_data_or_seg_to_spacing(
        canon_seg[None], spacing, plan.spacing, is_seg=True, order=1, order_z=0,
        force_separate_z=None)[0]
    assert pseg.dtype == np.uint8 and np.array_equal(pseg, want_seg)


@pytest.mark.parametrize("n", [5, 7, 24, 101])
def test_splits_match_nnunet(n):
    ids = sorted(f"case_{i:04d}" for i in range(n))
    want = generate_crossval_split(ids, seed=12345, n_splits=5)
    want = [{"train": [str(c) for c in f["train"]], "val": [str(c) for c in f["val"]]}
            for f in want]
    assert kfold_splits(ids) == want


def test_metrics_match_nnunet(tmp_path):
    import nibabel as nib
    from nnunetv2.imageio.nibabel_reader_writer import NibabelIO

    rng = np.random.default_rng(7)
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir(), pred_dir.mkdir()
    labels = [1, 2, 3]
    regions = [(1, 2, 3), (2, 3), (3,)]
    ours_labels, ours_regions, theirs_labels, theirs_regions = [], [], [], []
    for i in range(4):
        ref = _labels(rng, (8, 12, 10), 4)
        pred = np.where(rng.random(ref.shape) < 0.15, rng.integers(0, 4, ref.shape), ref)
        if i == 3:
            ref[ref == 3] = 0                    # a class missing in the reference: NaN Dice
            pred[pred == 3] = 0
        for arr, d in ((ref, ref_dir), (pred, pred_dir)):
            nib.save(nib.Nifti1Image(arr.astype(np.uint8), np.eye(4)), str(d / f"c{i}.nii.gz"))
        ours_labels.append(case_metrics(pred, ref, labels))
        ours_regions.append(case_metrics(pred, ref, regions))
        for want, keys in ((theirs_labels, labels), (theirs_regions, regions)):
            want.append(nn_eval.compute_metrics(str(ref_dir / f"c{i}.nii.gz"),
                                                str(pred_dir / f"c{i}.nii.gz"), NibabelIO(), keys))
    for got, want, keys in ((ours_labels, theirs_labels, labels),
                            (ours_regions, theirs_regions, regions)):
        for g, w in zip(got, want):
            for k in keys:
                for m, v in w["metrics"][k].items():
                    gv = g["metrics"][nn_eval.label_or_region_to_key(k)][m]
                    assert (np.isnan(v) and np.isnan(gv)) or gv == v, (k, m, gv, v)
        summary = summarize(got, keys)
        for k in keys:
            for m in ("Dice", "IoU", "TP"):
                v = np.nanmean([w["metrics"][k][m] for w in want])
                assert summary["mean"][nn_eval.label_or_region_to_key(k)][m] == pytest.approx(v)
        fg = np.mean([np.nanmean([w["metrics"][k]["Dice"] for w in want]) for k in keys])
        assert summary["foreground_mean"]["Dice"] == pytest.approx(fg)
