"""End-of-training validation: every validation case, whole volume, back in original geometry."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from contracts.jsonio import atomic_write_json, fsync_dir

from .inference import predict_probabilities
from .plans import Plan
from .preprocessed import load_case
from .runlog import RunLog


def _atomic_npz(path: Path, probabilities: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, probabilities=probabilities.astype(np.float16))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _atomic_nifti(labels: np.ndarray, props: dict, path: Path) -> None:
    from .geometry import save_nifti
    tmp = path.with_name(f".{path.name}.tmp.nii.gz")
    save_nifti(labels, props, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def reference_labels(seg: np.ndarray, props: dict) -> np.ndarray:
    """Ground truth on the original voxel grid: the raw label file when known, else inverted."""
    from .geometry import labels_to_original
    raw = props.get("label_file")
    if raw and Path(raw).exists():
        import nibabel as nib
        return np.asarray(nib.load(raw).dataobj).astype(np.int16)
    return labels_to_original(np.asarray(seg), props)


def validate_fold(net: torch.nn.Module, plan: Plan, folder: Path, cases: list[str], out_dir: Path,
                  log: RunLog, *, mirror: bool, overlap: float, device,
                  stop=None) -> dict | None:
    """Write validation/<case>.nii.gz, .npz and summary.json; cases already written are kept.

    Returns None when `stop` was requested: the cases written so far stay for the next attempt.
    """
    import nibabel as nib

    from .geometry import to_original
    from .metrics import case_metrics, summarize

    out_dir.mkdir(parents=True, exist_ok=True)
    labels = sorted(plan.labels.values())
    fg = plan.foreground_labels
    per_case = []
    log.progress("validation", 0, len(cases))
    for i, case in enumerate(cases):
        data, seg, props = load_case(folder, case, mmap=True)
        nii, npz = out_dir / f"{case}.nii.gz", out_dir / f"{case}.npz"
        if nii.exists() and npz.exists():
            pred = np.asarray(nib.load(str(nii)).dataobj).astype(np.int16)
        else:
            probs = predict_probabilities([net], np.asarray(data), plan, mirror=mirror,
                                          overlap=overlap, device=device)
            probs = to_original(probs, props)
            pred = np.argmax(probs, 0).astype(np.int16)
            pred = np.asarray(labels, dtype=np.int16)[pred]
            _atomic_npz(npz, probs)
            _atomic_nifti(pred, props, nii)
        if seg is not None:
            ref = reference_labels(seg, props)
            m = case_metrics(pred, ref, fg)
            m.setdefault("prediction_file", str(nii))
            m.setdefault("case", case)
            per_case.append(m)
        log.progress("validation", i + 1, len(cases), case=case)
        if stop is not None and stop.requested and i + 1 < len(cases):
            return None
    summary = summarize(per_case, fg)
    atomic_write_json(out_dir / "summary.json", summary)
    return summary
