"""find-best's postprocessing decision against nnU-Net's own determine_postprocessing, for
region-based labels (all foreground, then each region on top of the ones accepted) and plain
labels, on the same small folders of predictions and references: same steps, same arrays.

Needs the optional extra `nnunet` (nnunetv2==2.8.1), like test_nnunet_oracle.
"""

import multiprocessing

import nibabel as nib
import numpy as np
import pytest

try:
    from nnunetv2.postprocessing import remove_connected_components as nn_pp
except ImportError as e:   # the optional extra is not installed
    pytest.skip(f"nnunetv2 is not installed ({e}); `pip install -e '.[nnunet]'` runs these "
                "comparisons", allow_module_level=True)

from trainer.evaluation.postprocessing import Postprocessing, decide

REGIONS = {"background": 0, "organ incl. lesion": [1, 2], "lesion": [2]}
BRATS = {"background": 0, "whole tumour": [1, 2, 3], "tumour core": [2, 3], "enhancing": [3]}
SHAPE = (20, 20, 20)


def _paint(seg, parts):
    for label, (z0, z1, y0, y1, x0, x1) in parts:
        seg[z0:z1, y0:y1, x0:x1] = label
    return seg


def _case(*truth, islands=()):
    """(prediction, reference): (label, box) painted in order, box = (z0, z1, y0, y1, x0, x1);
    the prediction is the reference with the `islands` painted on top (false positives)."""
    ref = _paint(np.zeros(SHAPE, np.uint8), truth)
    return _paint(ref.copy(), islands), ref


ORGAN, SECOND_PART = (2, 10, 2, 10, 2, 10), (13, 18, 13, 18, 13, 18)
# Component sizes all differ: nnU-Net keeps every component of the largest size on a tie,
# foldwatch the first of them.
CASES = {
    # the organ really has two parts: keeping the largest foreground component hurts here
    "two_parts": _case((1, ORGAN), (1, SECOND_PART), (2, (4, 6, 4, 6, 4, 6)),
                       islands=[(2, (14, 16, 2, 4, 2, 3))]),
    # a false organ island and a false lesion island far from the organ
    "islands": _case((1, ORGAN), (2, (4, 6, 4, 6, 4, 6)),
                     islands=[(1, (14, 17, 14, 17, 2, 5)), (2, (2, 4, 14, 16, 15, 16))]),
    # two real lesions in the organ and a one-voxel false lesion outside it
    "two_lesions": _case((1, ORGAN), (2, (3, 6, 3, 6, 3, 6)), (2, (7, 9, 7, 9, 7, 9)),
                         islands=[(2, (18, 19, 18, 19, 18, 19))]),
    # a false lesion island touching nothing, twice as large as the real lesion
    "big_island": _case((1, ORGAN), (2, (5, 6, 5, 6, 5, 7)),
                        islands=[(2, (14, 16, 14, 16, 3, 4))]),
}
# BraTS-like nested regions. The whole tumour has two real parts (so no all-foreground
# step); a false core island holds one enhancing voxel. Removing it as "tumour core" also
# fixes "enhancing", so enhancing, decided on top of core, gains nothing and is not chosen
# (decided on its own it would be): the order of nnU-Net's region steps shows.
TUMOUR = _case((1, (2, 12, 2, 12, 2, 12)), (1, (14, 18, 14, 18, 14, 18)), (2, (4, 9, 4, 9, 4, 9)),
               (3, (5, 7, 5, 7, 5, 7)),
               islands=[(2, (14, 17, 2, 5, 2, 5)), (3, (15, 16, 3, 4, 3, 4))])

SCENARIOS = {   # name: (labels, regions_class_order, cases, foldwatch's expected decision)
    "lesion island after two-part organ": (REGIONS, [1, 2], ["two_parts", "islands", "two_lesions"],
                                           Postprocessing(False, [], [(2,)])),
    "all foreground": (REGIONS, [1, 2], ["islands", "two_lesions", "big_island"],
                       Postprocessing(True, [], [])),
    "nested regions in order": (BRATS, [1, 2, 3], ["tumour"], Postprocessing(False, [], [(2, 3)])),
}


class _InlinePool:
    """multiprocessing's Pool run in this process: nnU-Net starts a spawn pool for every
    folder it scores (an interpreter and nnunetv2 import each, ~3 s); the work is the same."""

    def __init__(self, *_a, **_k):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def starmap(self, fn, args):
        return [fn(*a) for a in args]


class _InlineContext:
    Pool = _InlinePool


def _nnunet_decision(tmp_path, cases, labels, regions_class_order, monkeypatch):
    """nnU-Net's determine_postprocessing on NIfTI folders of `cases`; its steps and outputs."""
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    pred_dir.mkdir()
    ref_dir.mkdir()
    for name, (pred, ref) in cases.items():
        nib.save(nib.Nifti1Image(pred, np.eye(4)), pred_dir / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(ref, np.eye(4)), ref_dir / f"{name}.nii.gz")
    dataset = {"labels": labels, "file_ending": ".nii.gz"}
    if regions_class_order:
        dataset["regions_class_order"] = regions_class_order
    plans = {"image_reader_writer": "NibabelIO", "label_manager": "LabelManager"}
    monkeypatch.setattr(multiprocessing, "get_context", lambda *_: _InlineContext)
    fns, kwargs = nn_pp.determine_postprocessing(str(pred_dir), str(ref_dir), plans, dataset,
                                                 num_processes=1)
    assert all(f is nn_pp.remove_all_but_largest_component_from_segmentation for f in fns)
    out = {name: np.asarray(nib.load(str(pred_dir / "postprocessed" / f"{name}.nii.gz")).dataobj)
           for name in cases}
    return [k["labels_or_regions"] for k in kwargs], out


def _as_nnunet_steps(post: Postprocessing, foreground: list[int]) -> list:
    steps = [foreground] if post.largest_component_all_foreground else []
    return steps + list(post.largest_component_classes) + list(post.largest_component_regions)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_region_postprocessing_matches_nnunet(tmp_path, monkeypatch, scenario):
    labels, order, names, expected = SCENARIOS[scenario]
    cases = {n: TUMOUR if n == "tumour" else CASES[n] for n in names}
    steps, nn_out = _nnunet_decision(tmp_path, cases, labels, order, monkeypatch)
    regions = [tuple(v) for v in labels.values() if v != 0]
    post, report = decide(lambda: iter(cases.values()), regions)
    assert post == expected                       # the scenario exercises what it says
    assert _as_nnunet_steps(post, sorted({v for r in regions for v in r})) == steps
    for name, (pred, _) in cases.items():
        assert np.array_equal(post.apply(pred), nn_out[name]), name
    nn_report = nn_pp.load_json(str(tmp_path / "pred" / "postprocessing.json"))
    assert report["foreground_mean_dice_after"] == pytest.approx(
        nn_report["postprocessed"]["foreground_mean"]["Dice"], abs=1e-12)
    assert report["dice_per_class_after"] == pytest.approx(
        {k: v["Dice"] for k, v in nn_report["postprocessed"]["mean"].items()}, abs=1e-12)
    assert Postprocessing.from_dict(post.to_dict()) == post   # as predict reads it back


@pytest.mark.parametrize("names,expected", [
    (["two_parts", "islands", "two_lesions"], Postprocessing(False, [2], [])),
    (["islands", "two_lesions", "big_island"], Postprocessing(True, [], []))])
def test_label_postprocessing_matches_nnunet(tmp_path, monkeypatch, names, expected):
    """Plain labels (organ 1, lesion 2) on the same cases: the per-class path agrees too."""
    cases = {n: CASES[n] for n in names}
    labels = {"background": 0, "organ": 1, "lesion": 2}
    steps, nn_out = _nnunet_decision(tmp_path, cases, labels, None, monkeypatch)
    post, _ = decide(iter(cases.values()), [1, 2])
    assert post == expected and _as_nnunet_steps(post, [1, 2]) == steps
    assert "largest_component_regions" not in post.to_dict()    # the file keeps its keys
    for name, (pred, _) in cases.items():
        assert np.array_equal(post.apply(pred), nn_out[name]), name
