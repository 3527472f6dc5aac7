"""Fold validation outputs written by hand, for crossval/find-best tests without training.

A real nnU-Net-layout dataset (NIfTI labels), plans, splits and, per configuration and fold,
validation/<case>.nii.gz + .npz (probabilities) + summary.json exactly as training writes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml

from contracts.jsonio import atomic_write_json
from trainer.evaluation.metrics import case_metrics, summarize
from trainer.planning.plans import ChannelNorm, Plan

SHAPE = (6, 8, 8)
AFFINE = np.diag([1.5, 0.8, 0.8, 1.0])


def reference(i: int) -> np.ndarray:
    seg = np.zeros(SHAPE, np.int16)
    seg[1:4, 2:6, 2:6] = 1
    seg[2, 3 + i % 2, 3] = 2
    return seg


def write_dataset(root: Path, n: int) -> list[str]:
    ids = [f"case_{i:03d}" for i in range(n)]
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i, c in enumerate(ids):
        img = reference(i).astype(np.float32) * 100
        nib.save(nib.Nifti1Image(img, AFFINE), root / "imagesTr" / f"{c}_0000.nii.gz")
        nib.save(nib.Nifti1Image(reference(i).astype(np.uint8), AFFINE), root / "labelsTr" / f"{c}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1, "lesion": 2},
        "numTraining": n, "file_ending": ".nii.gz"}))
    return ids


def probabilities_for(seg: np.ndarray, confidence: float) -> np.ndarray:
    """(3, ...) probabilities whose argmax is `seg`, with the given winning probability."""
    rest = (1 - confidence) / 2
    p = np.full((3, *seg.shape), rest, np.float32)
    for k in range(3):
        p[k][seg == k] = confidence
    return p


def write_fold_outputs(exp_root: Path, cfg: str, fold: int, cases: dict[str, tuple[np.ndarray, float]],
                       refs: dict[str, np.ndarray]) -> None:
    """cases: id -> (predicted labels, confidence); writes what validation writes."""
    out = exp_root / cfg / f"fold_{fold}" / "validation"
    out.mkdir(parents=True)
    per_case = []
    for case, (seg, conf) in cases.items():
        nib.save(nib.Nifti1Image(seg.astype(np.uint8), AFFINE), out / f"{case}.nii.gz")
        np.savez_compressed(out / f"{case}.npz",
                            probabilities=probabilities_for(seg, conf).astype(np.float16))
        m = case_metrics(seg, refs[case], [1, 2])
        m.update(case=case, prediction_file=str(out / f"{case}.nii.gz"))
        per_case.append(m)
    atomic_write_json(out / "summary.json", summarize(per_case, [1, 2]))


def write_experiment(tmp: Path, configurations=("2d", "3d_fullres"), n=10) -> tuple[Path, list[str]]:
    data = tmp / "Dataset901_Fixture"
    ids = write_dataset(data, n)
    exp = {"experiment": "fx", "dataset": str(data), "results": str(tmp / "results"),
           "configurations": {c: {} for c in configurations}}
    path = tmp / "fx.yaml"
    path.write_text(yaml.safe_dump(exp))
    root = tmp / "results" / "fx"
    for c in configurations:
        dim = 2 if c == "2d" else 3
        Plan(configuration=c, dim=dim, spacing=[1.5, 0.8, 0.8], patch_size=[8, 8][:dim] if dim == 2 else [4, 8, 8],
             batch_size=2, median_shape=list(SHAPE), kernel_sizes=[[3] * dim, [3] * dim],
             strides=[[1] * dim, [2] * dim], filters=[4, 8],
             normalization=[ChannelNorm("CT", "zscore")],
             labels={"background": 0, "organ": 1, "lesion": 2}, channel_names=["CT"]).save(root / "plans" / f"{c}.json")
    folds = [ids[k::5] for k in range(5)]
    atomic_write_json(root / "splits.json",
                      [{"train": sorted(set(ids) - set(v)), "val": sorted(v)} for v in folds])
    return path, ids
