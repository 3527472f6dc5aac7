"""A tiny nnU-Net v2 raw dataset made on the fly, and the environment to run nnU-Net on it."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

DATASET = "Dataset901_Tiny"


def make_tiny_dataset(raw_root: Path, cases: int = 8, shape=(4, 24, 24), seed: int = 0,
                      test_labels: bool = False) -> Path:
    """`cases` small 3D images (a bright square on noise) with their labels, plus 2 test images
    (with their labels in labelsTs when `test_labels`)."""
    rng = np.random.default_rng(seed)
    folder = raw_root / DATASET
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)

    def case(name: str, images: str, labels: str | None) -> None:
        img = rng.normal(0, 0.3, shape).astype(np.float32)
        seg = np.zeros(shape, np.uint8)
        z, y, x = shape
        cy, cx = rng.integers(6, y - 6), rng.integers(6, x - 6)
        seg[:, cy - 4:cy + 4, cx - 4:cx + 4] = 1
        img[seg == 1] += 2.0
        # nibabel writes x, y, z: transpose so the first (slowest) axis is z
        affine = np.diag([1.0, 1.0, 3.0, 1.0])
        nib.save(nib.Nifti1Image(img.transpose(2, 1, 0), affine),
                 str(folder / images / f"{name}_0000.nii.gz"))
        if labels:
            nib.save(nib.Nifti1Image(seg.transpose(2, 1, 0), affine),
                     str(folder / labels / f"{name}.nii.gz"))

    for i in range(cases):
        case(f"tiny_{i:03d}", "imagesTr", "labelsTr")
    if test_labels:
        (folder / "labelsTs").mkdir(exist_ok=True)
    for i in range(2):
        case(f"tiny_test_{i:03d}", "imagesTs", "labelsTs" if test_labels else None)
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MR"}, "labels": {"background": 0, "square": 1},
        "numTraining": cases, "file_ending": ".nii.gz"}, indent=2))
    return folder


def nnunet_env(root: Path) -> dict[str, str]:
    """nnU-Net's three roots under `root`, and one augmentation worker (2-core machine)."""
    return {"nnUNet_raw": str(root / "nnUNet_raw"),
            "nnUNet_preprocessed": str(root / "nnUNet_preprocessed"),
            "nnUNet_results": str(root / "nnUNet_results"),
            "nnUNet_n_proc_DA": "1"}
