"""End-of-training validation: every validation case, whole volume, back in original geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from contracts.jsonio import atomic_write_json

from trainer.inference.sliding_window import predict_probabilities
from trainer.data.labelmaps import atomic_nifti, atomic_npz, to_label_map
from trainer.planning.plans import Plan
from trainer.planning.preprocessed import load_case
from trainer.runtime.runlog import RunLog


def reference_labels(seg: np.ndarray, props: dict) -> np.ndarray:
    """Ground truth on the original voxel grid: the raw label file when known, else inverted."""
    from trainer.data.geometry import labels_to_original
    raw = props.get("label_file")
    if raw and Path(raw).exists():
        from trainer.data.geometry import load_label
        return np.rint(load_label(raw)[0]).astype(np.int16)
    return labels_to_original(np.asarray(seg), props)


def validate_fold(net: torch.nn.Module, plan: Plan, folder: Path, cases: list[str], out_dir: Path,
                  log: RunLog, *, mirror: bool, overlap: float, device,
                  stop=None, previews=None, previous: Path | None = None) -> dict | None:
    """Write validation/<case>.nii.gz, .npz and summary.json; cases already written are kept.

    Returns None when `stop` was requested: the cases written so far stay for the next attempt.
    """
    import nibabel as nib

    from trainer.data.geometry import to_original
    from trainer.evaluation.metrics import case_metrics, summarize

    out_dir.mkdir(parents=True, exist_ok=True)
    labels = sorted(plan.labels.values())
    fg = plan.eval_keys
    per_case = []
    log.progress("validation", 0, len(cases))
    for i, case in enumerate(cases):
        data, seg, props = load_case(folder, case, mmap=True)
        nii, npz = out_dir / f"{case}.nii.gz", out_dir / f"{case}.npz"
        if nii.exists() and npz.exists():
            pred = np.asarray(nib.load(str(nii)).dataobj).astype(np.int16)
        else:
            if previous is not None:      # cascade: the previous stage enters one-hot
                from trainer.inference.cascade import load_previous, with_previous
                data = with_previous(data, load_previous(previous, case), plan)
            probs = predict_probabilities([net], np.asarray(data), plan, mirror=mirror,
                                          overlap=overlap, device=device)
            probs = to_original(probs, props, regions=plan.has_regions)
            pred = to_label_map(probs, labels, plan.regions_class_order)
            atomic_npz(npz, probs)
            atomic_nifti(pred, props, nii)
        if seg is not None:
            ref = reference_labels(seg, props)
            m = case_metrics(pred, ref, fg)
            m.setdefault("prediction_file", str(nii))
            m.setdefault("case", case)
            per_case.append(m)
            if previews is not None:        # trainer.reporting.ValidationPreviews
                previews.consider(case, props, pred, ref)
        log.progress("validation", i + 1, len(cases), case=case)
        if stop is not None and stop.requested and i + 1 < len(cases):
            return None
    summary = summarize(per_case, fg)
    atomic_write_json(out_dir / "summary.json", summary)
    if previews is not None:
        previews.write()
    return summary
