"""Preprocess every training case of a configuration into the cache (format: trainer.planning.preprocessed).

Per case: `<case>_data.npy`, `<case>_seg.npy`, then `<case>.json` last, each written
atomically; the json records a digest of the plan's preprocessing fields and each source
file's size and mtime, so an up-to-date case is skipped and a half-done one is redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path

import numpy as np

from contracts.jsonio import atomic_write_file, atomic_write_json

from trainer.data.cases import CaseFiles
from trainer.data.geometry import class_locations, load_images, load_label, preprocess_arrays
from trainer.planning.plans import Plan

FORMAT_VERSION = 2      # 2: nnU-Net resampling rules, normalize before resampling, uint8/int16 seg


def preprocessing_digest(plan: Plan) -> str:
    """Hash of the plan fields that change the cached arrays (not batch size, patch...)."""
    d = plan.to_dict()
    keys = ("configuration", "dim", "spacing", "normalization", "labels", "channel_names")
    text = json.dumps({k: d[k] for k in keys} | {"format": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def source_stamp(case: CaseFiles) -> dict[str, list[int]]:
    files = list(case.images) + ([case.label] if case.label else [])
    out = {}
    for p in files:
        st = os.stat(p)
        out[str(Path(p).resolve())] = [st.st_size, st.st_mtime_ns]
    return out


def is_up_to_date(out_dir: Path, case: CaseFiles, digest: str) -> bool:
    meta = out_dir / f"{case.case_id}.json"
    if not meta.exists() or not (out_dir / f"{case.case_id}_data.npy").exists():
        return False
    if case.label and not (out_dir / f"{case.case_id}_seg.npy").exists():
        return False
    try:
        props = json.loads(meta.read_text())
        return props.get("plan_digest") == digest and props.get("sources") == source_stamp(case)
    except (ValueError, OSError):
        return False


def _atomic_npy(path: Path, array: np.ndarray) -> None:
    atomic_write_file(path, lambda f: np.save(f, np.ascontiguousarray(array)))


def preprocess_case(args: tuple[CaseFiles, dict, str, str]) -> dict:
    """Preprocess and cache one case unless up to date; returns {case, skipped, shape}."""
    case, plan_dict, out_dir, digest = args
    out_dir = Path(out_dir)
    if is_up_to_date(out_dir, case, digest):
        return {"case": case.case_id, "skipped": True}
    plan = Plan.from_dict(plan_dict)
    stamp = source_stamp(case)
    images, affine = load_images(case.images, len(plan.channel_names))
    seg = None
    if case.label is not None:
        raw, _ = load_label(case.label)
        seg = np.rint(raw).astype(np.int16)
    data, out_seg, props = preprocess_arrays(images, affine, plan, seg)
    props.update(
        case=case.case_id,
        image_files=[str(Path(p).resolve()) for p in case.images],
        label_file=str(Path(case.label).resolve()) if case.label else None,
        plan_digest=digest,
        sources=stamp,
        configuration=plan.configuration,
    )
    if out_seg is not None:
        seed = zlib.crc32(case.case_id.encode())
        props["class_locations"] = class_locations(out_seg, plan.foreground_labels, seed)
        _atomic_npy(out_dir / f"{case.case_id}_seg.npy", out_seg)
    _atomic_npy(out_dir / f"{case.case_id}_data.npy", data.astype(np.float32))
    atomic_write_json(out_dir / f"{case.case_id}.json", props, indent=None)   # last: the commit
    return {"case": case.case_id, "skipped": False, "shape": props["shape"]}
