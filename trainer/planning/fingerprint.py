"""The dataset fingerprint: spacings, shapes, foreground intensities, class voxel fractions.

Measured like nnU-Net: in canonical (z, y, x) order after cropping to the body, with the
intensity statistics taken over foreground (labelled) voxels of every training case.
"""

from __future__ import annotations

import zlib
from typing import Callable

import numpy as np

from trainer.data.cases import CaseFiles, DatasetInfo
from trainer.data.geometry import (body_box, canonical_spacing, crop, load_images, load_label,
                       orientation_transform, to_canonical)
from trainer.runtime.workers import run_all

SAMPLES_PER_CASE = 10_000


def case_fingerprint(args: tuple[CaseFiles, list[str], list[int]]) -> dict:
    """Spacing, cropped shape, sampled foreground intensities and class counts of one case."""
    case, channel_names, labels = args
    images, affine = load_images(case.images, len(channel_names))
    seg, _ = load_label(case.label)
    transform = orientation_transform(affine)
    canon = to_canonical(images, transform)
    canon_seg = to_canonical(np.rint(seg).astype(np.int16), transform)
    box = body_box(canon, channel_names, canon_seg)
    canon, canon_seg = crop(canon, box), crop(canon_seg, box)
    fg = canon_seg > 0
    rng = np.random.default_rng(zlib.crc32(case.case_id.encode()))
    samples = []
    for c in range(canon.shape[0]):
        values = canon[c][fg]
        if len(values) > SAMPLES_PER_CASE:
            values = rng.choice(values, SAMPLES_PER_CASE, replace=False)
        samples.append(values.astype(np.float32))
    counts = {str(v): int((canon_seg == v).sum()) for v in labels}
    return {"case": case.case_id, "spacing": canonical_spacing(affine, transform),
            "shape": list(canon.shape[1:]), "samples": samples, "counts": counts,
            "voxels": int(canon_seg.size)}


def compute_fingerprint(info: DatasetInfo, workers: int,
                        progress: Callable[[int, int], None] | None = None) -> dict:
    labels = sorted(info.labels.values())
    items = [(c, info.channel_names, labels) for c in info.cases]
    results = run_all(case_fingerprint, items, workers,
                      (lambda done, *_: progress(done, len(items))) if progress else None)
    intensity = {}
    for c, name in enumerate(info.channel_names):
        v = np.concatenate([r["samples"][c] for r in results]) if results else np.zeros(0)
        if v.size == 0:
            v = np.zeros(1, np.float32)
        intensity[str(c)] = {
            "name": name, "mean": float(v.mean()), "std": float(v.std()),
            "median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
            "percentile_00_5": float(np.percentile(v, 0.5)),
            "percentile_99_5": float(np.percentile(v, 99.5)),
        }
    total = sum(r["voxels"] for r in results) or 1
    fractions = {str(v): sum(r["counts"][str(v)] for r in results) / total for v in labels}
    return {
        "dataset": str(info.source or info.root),
        "case_ids": [r["case"] for r in results],
        "channel_names": info.channel_names,
        "labels": info.labels,
        "regions": info.regions,
        "regions_class_order": info.regions_class_order,
        "spacings": [r["spacing"] for r in results],        # (z, y, x) mm, canonical
        "shapes_after_crop": [r["shape"] for r in results],  # (z, y, x) voxels
        "median_spacing": np.median([r["spacing"] for r in results], 0).tolist(),
        "median_shape_after_crop": np.median([r["shape"] for r in results], 0).tolist(),
        "foreground_intensity": intensity,                   # per channel
        "class_voxel_fraction": fractions,                   # of the cropped volume
    }
