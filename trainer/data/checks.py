"""`check-dataset`: find every problem in a dataset before hours of training depend on it.

Per case: every channel file and the label exist and are readable NIfTI, 3D, free of
NaN/Inf; shapes agree; affines agree within tolerance; label values are declared integers.
Per dataset: numTraining matches, no stray or unpaired files. All problems are reported.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from contracts.errors import DatasetError

from trainer.data.cases import CaseFiles, DatasetInfo
from trainer.runtime.workers import run_all

AFFINE_ATOL = 1e-3     # mm; world positions of neighbouring files must agree this closely
AFFINE_RTOL = 1e-4


def _load(path, case_id: str, problems: list[str], channels: bool = False):
    from trainer.data.geometry import load_nifti
    try:
        return load_nifti(path, channels=channels)
    except DatasetError as e:
        problems.append(f"{e} (case {case_id})" if "case" not in str(e) else str(e))
        return None


def check_case(args: tuple[CaseFiles, list[int], bool, int]) -> list[str]:
    """Every problem of one case (empty list: fine)."""
    case, declared, need_label, num_channels = args
    multi = len(case.images) == 1 and num_channels > 1     # MSD: one 4D file for all channels
    problems: list[str] = []
    ref = None          # (path, shape, affine) of the first readable channel
    for c, path in enumerate(case.images):
        if not path.exists():
            problems.append(f"{path}: case {case.case_id}: channel {c} image file is missing; add it")
            continue
        loaded = _load(path, case.case_id, problems, channels=multi)
        if loaded is None:
            continue
        data, affine, _ = loaded
        if multi:
            if data.ndim != 4 or data.shape[3] != num_channels:
                got = (f"a 3D image (one channel), shape {data.shape}" if data.ndim == 3 else
                       f"a 4D file with {data.shape[3]} channels, shape {data.shape}")
                problems.append(f"{path}: case {case.case_id}: {num_channels} channels are "
                                f"declared, got {got}; list one file per channel (\"image\": "
                                f"[...]) or give one 4D file with {num_channels} channels")
                continue
        bad = int((~np.isfinite(data)).sum())
        if bad:
            problems.append(f"{path}: case {case.case_id}: {bad} NaN/Inf voxel(s); replace them "
                            "(e.g. with the background intensity) and save again")
        if ref is None:
            ref = (path, data.shape[:3], affine)
        else:
            _compare(path, case.case_id, data.shape[:3], affine, ref, problems)
    if case.label is None:
        if need_label:
            problems.append(f"case {case.case_id}: label file is missing; add it to labelsTr")
        return problems
    if not case.label.exists():
        problems.append(f"{case.label}: case {case.case_id}: label file is missing; add it")
        return problems
    from trainer.data.geometry import load_label
    try:
        seg, affine = load_label(case.label)
    except DatasetError as e:
        problems.append(f"{e} (case {case.case_id})" if "case" not in str(e) else str(e))
        return problems
    if not np.isfinite(seg).all():
        problems.append(f"{case.label}: case {case.case_id}: label contains NaN/Inf")
        return problems
    if ref is not None:
        _compare(case.label, case.case_id, seg.shape, affine, ref, problems)
    if not np.array_equal(seg, np.rint(seg)):
        problems.append(f"{case.label}: case {case.case_id}: label has non-integer values; "
                        "save labels as integers")
    values = set(np.unique(np.rint(seg)).astype(int).tolist())
    undeclared = sorted(values - set(declared))
    if undeclared:
        problems.append(f"{case.label}: case {case.case_id}: label value(s) {undeclared} not declared "
                        f"in 'labels' (declared: {sorted(declared)}); declare them or fix the label")
    return problems


def _compare(path, case_id, shape, affine, ref, problems) -> None:
    ref_path, ref_shape, ref_affine = ref
    if tuple(shape) != tuple(ref_shape):
        problems.append(f"{path}: case {case_id}: shape {tuple(shape)} differs from "
                        f"{ref_path.name} {tuple(ref_shape)}; images and label must share one grid")
    elif not np.allclose(affine, ref_affine, atol=AFFINE_ATOL, rtol=AFFINE_RTOL):
        diff = float(np.abs(affine - ref_affine).max())
        problems.append(f"{path}: case {case_id}: affine differs from {ref_path.name} by up to "
                        f"{diff:.4g}; resample it onto the image grid or fix its header")


def check_dataset(info: DatasetInfo, workers: int = 1,
                  progress: Callable[[int, int], None] | None = None) -> list[str]:
    """Every problem found in the dataset (empty list: fine)."""
    problems = list(info.problems)
    if info.num_training is not None and info.num_training != len(info.cases):
        problems.append(f"{info.source}: numTraining is {info.num_training} but "
                        f"{len(info.cases)} training case(s) were found; correct numTraining")
    if not info.cases:
        problems.append(f"{info.source or info.root}: no training cases found")
    declared = sorted(info.labels.values())
    nc = len(info.channel_names)
    items = [(c, declared, True, nc) for c in info.cases] + \
            [(c, declared, False, nc) for c in info.test_cases]
    results = run_all(check_case, items, workers,
                      (lambda done, *_: progress(done, len(items))) if progress else None)
    # The layout scan and the per-case check can both notice a missing file: report it once.
    missing = {p.split(": ")[0] for p in problems if "missing" in p}
    for r in results:
        for p in r:
            key = p.split(": ")[0]
            if "missing" in p and key in missing:
                continue
            if p.startswith("case ") and "label file is missing" in p:
                cid = p[5:].split(":")[0]
                if any(f"case {cid}: label file is missing" in q for q in problems):
                    continue
            problems.append(p)
    return problems


def require_valid(info: DatasetInfo, workers: int = 1) -> None:
    problems = check_dataset(info, workers)
    if problems:
        raise DatasetError([*problems, "run `python -m trainer check-dataset DATASET` after fixing"],
                           header=f"{info.source or info.root}: dataset problems")
