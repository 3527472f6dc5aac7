"""After the folds: ensembling, postprocessing decisions, evaluate, crossval and find-best."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline_fixture import AFFINE, reference, write_experiment, write_fold_outputs
from trainer.inference.ensembling import average_probabilities
from trainer.data.labelmaps import argmax_labels
from trainer.evaluation.postprocessing import Postprocessing, decide, keep_largest_foreground

ROOT = Path(__file__).resolve().parents[1]


def trainer(*args, expect=0):
    r = subprocess.run([sys.executable, "-m", "trainer", *map(str, args)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == expect, r.stdout + r.stderr
    return r


def test_ensemble_average_by_hand():
    a = np.array([[0.7, 0.2], [0.2, 0.5], [0.1, 0.3]], np.float32)   # (K=3, 2 voxels)
    b = np.array([[0.1, 0.4], [0.2, 0.1], [0.7, 0.5]], np.float32)
    mean = average_probabilities([a, b])
    np.testing.assert_allclose(mean, [[0.4, 0.3], [0.2, 0.3], [0.4, 0.4]])
    # voxel 0: tie between classes 0 and 2 -> argmax takes the first; voxel 1: class 2
    assert argmax_labels(mean, [0, 1, 2]).tolist() == [0, 2]


def _blob_case(spurious: bool):
    ref = np.zeros((10, 10, 10), np.int16)
    ref[2:6, 2:6, 2:6] = 1
    pred = ref.copy()
    if spurious:
        pred[8:10, 8:10, 8:10] = 1          # a false island far away
    return pred, ref


def test_largest_component_decided_when_it_helps():
    cases = [_blob_case(True), _blob_case(True), _blob_case(False)]
    post, report = decide(iter(cases), [1])
    assert post.largest_component_all_foreground
    assert report["foreground_mean_dice_all_foreground_lcc"] > report["foreground_mean_dice_before"]
    assert keep_largest_foreground(cases[0][0]).sum() == 64


def test_largest_component_rejected_when_it_hurts():
    ref = np.zeros((10, 10, 10), np.int16)
    ref[1:4, 1:4, 1:4] = 1
    ref[6:9, 6:9, 6:10] = 1                  # the organ really has two parts
    post, report = decide(iter([(ref.copy(), ref)]), [1])
    assert post == Postprocessing(False, [])
    assert report["foreground_mean_dice_all_foreground_lcc"] < report["foreground_mean_dice_before"]


def test_per_class_decision_only_for_the_class_it_helps():
    ref = np.zeros((10, 10, 10), np.int16)
    ref[1:4, 1:4, 1:4] = 1
    ref[6:9, 6:9, 6:9] = 1                   # class 1: two real parts
    ref[1:3, 6:8, 6:8] = 2
    pred = ref.copy()
    pred[8:10, 0:2, 8:10] = 2                # class 2: a spurious island
    post, _ = decide(iter([(pred, ref)]), [1, 2])
    assert not post.largest_component_all_foreground   # would cut class 1 in half
    assert post.largest_component_classes == [2]


def _nifti(path: Path, arr, affine=AFFINE):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(arr, np.uint8), affine), path)


def test_evaluate_reports_missing_and_extra_cases(tmp_path):
    for i in range(3):
        _nifti(tmp_path / "ref" / f"c{i}.nii.gz", reference(i))
    _nifti(tmp_path / "pred" / "c0.nii.gz", reference(0))
    _nifti(tmp_path / "pred" / "c1.nii.gz", np.zeros_like(reference(1)))
    _nifti(tmp_path / "pred" / "zz.nii.gz", reference(0))
    r = trainer("evaluate", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref")
    s = json.loads((tmp_path / "pred" / "summary.json").read_text())
    assert s["missing_predictions"] == ["c2"] and s["extra_predictions"] == ["zz"]
    assert "c2" in r.stderr and "zz" in r.stderr
    assert s["mean"]["1"]["Dice"] == 0.5                 # 1.0 and 0.0
    # a prediction on another grid is an error naming the case, exit 3
    _nifti(tmp_path / "pred" / "c0.nii.gz", reference(0), affine=np.diag([2, 2, 2, 1.0]))
    r = trainer("evaluate", "--pred", tmp_path / "pred", "--ref", tmp_path / "ref", expect=3)
    assert "c0" in r.stderr and "Traceback" not in r.stderr


def test_crossval_and_find_best_pick_the_ensemble_when_it_wins(tmp_path):
    exp, ids = write_experiment(tmp_path)
    root = tmp_path / "results" / "fx"
    splits = json.loads((root / "splits.json").read_text())
    refs = {c: reference(i) for i, c in enumerate(ids)}
    wrong = {c: np.where(refs[c] == 2, 1, refs[c]) for c in ids}   # misses the lesion
    for k in range(5):
        val = splits[k]["val"]
        # 2d is unsure where it is wrong (even cases), 3d_fullres on the odd ones:
        # averaged, the confident right answer wins everywhere.
        for cfg, bad in (("2d", 0), ("3d_fullres", 1)):
            outs = {c: ((wrong[c], 0.4) if ids.index(c) % 2 == bad else (refs[c], 0.9)) for c in val}
            write_fold_outputs(root, cfg, k, outs, refs)
    for cfg in ("2d", "3d_fullres"):
        trainer("crossval", "--experiment", exp, "--configuration", cfg)
        cv = json.loads((root / cfg / "crossval" / "summary.json").read_text())
        assert len(cv["metric_per_case"]) == len(ids)
        assert cv["mean"]["2"]["Dice"] == pytest.approx(0.5)
    trainer("find-best", "--experiment", exp)
    best = json.loads((root / "best_configuration.json").read_text())
    assert best["configurations"] == ["2d", "3d_fullres"] and best["ensemble"]
    assert best["foreground_mean_dice"] == 1.0
    ens = json.loads((root / "ensembles" / "2d+3d_fullres" / "summary.json").read_text())
    assert ens["foreground_mean"]["Dice"] == 1.0
    post = json.loads((root / "postprocessing.json").read_text())
    assert post["largest_component_all_foreground"] is False   # lesion touches organ: no gain
    assert "predict" in (root / "how_to_predict.txt").read_text()
    events = [json.loads(line) for line in (root / "stages" / "find-best" / "metrics.jsonl").open()]
    assert events[0]["event"] == "start" and events[-1]["status"] == "completed"


def test_single_configuration_wins_a_tie(tmp_path):
    exp, ids = write_experiment(tmp_path)
    root = tmp_path / "results" / "fx"
    splits = json.loads((root / "splits.json").read_text())
    refs = {c: reference(i) for i, c in enumerate(ids)}
    for k in range(5):  # all perfect: the singles and the ensemble tie at 1.0
        for cfg in ("2d", "3d_fullres"):
            write_fold_outputs(root, cfg, k, {c: (refs[c], 0.8) for c in splits[k]["val"]}, refs)
    for cfg in ("2d", "3d_fullres"):
        trainer("crossval", "--experiment", exp, "--configuration", cfg)
    trainer("find-best", "--experiment", exp)
    best = json.loads((root / "best_configuration.json").read_text())
    assert best["configurations"] == ["2d"] and not best["ensemble"]


def test_crossval_names_missing_folds_and_writes_nothing(tmp_path):
    exp, ids = write_experiment(tmp_path, configurations=("3d_fullres",))
    root = tmp_path / "results" / "fx"
    splits = json.loads((root / "splits.json").read_text())
    refs = {c: reference(i) for i, c in enumerate(ids)}
    for k in (0, 1, 3):
        write_fold_outputs(root, "3d_fullres", k, {c: (refs[c], 0.8) for c in splits[k]["val"]}, refs)
    r = trainer("crossval", "--experiment", exp, "--configuration", "3d_fullres", expect=2)
    assert "2, 4" in r.stderr and "Traceback" not in r.stderr
    assert not (root / "3d_fullres" / "crossval" / "summary.json").exists()
