"""Segmentation metrics with nnU-Net's definitions (nnunetv2 evaluate_predictions).

Per case and class: TP, FP, FN, TN, Dice, IoU, n_pred, n_ref. Dice and IoU are NaN when
reference and prediction are both empty, 0 when only one of them is. Class means are
nanmeans over cases; `foreground_mean` is the plain mean of the class means (NaN if a class
never appears anywhere, as in nnU-Net). Written as strict JSON: NaN becomes null.
Region-based datasets are scored per region: a region (a tuple of label values) is the
union of its labels in the exported label map, keyed "(1, 2, 3)" as nnU-Net writes it.
"""

from __future__ import annotations

import numpy as np

METRICS = ("Dice", "IoU", "FP", "TP", "FN", "TN", "n_pred", "n_ref")


def key_of(label) -> str:
    """"1" for a label, "(1, 2)" for a region (nnU-Net's label_or_region_to_key)."""
    from contracts.layout import summary_key
    return summary_key(label)


def mask_of(seg: np.ndarray, label) -> np.ndarray:
    """Voxels of a label, or of any label of a region."""
    if isinstance(label, (tuple, list)):
        return np.isin(seg, [int(v) for v in label])
    return seg == label


def class_counts(pred: np.ndarray, ref: np.ndarray, label) -> dict:
    """TP/FP/FN/TN and the derived metrics of one label or region."""
    p = mask_of(pred, label)
    r = mask_of(ref, label)
    tp = int(np.count_nonzero(p & r))
    fp = int(np.count_nonzero(p & ~r))
    fn = int(np.count_nonzero(~p & r))
    tn = int(p.size - tp - fp - fn)
    if tp + fp + fn == 0:
        dice = iou = float("nan")
    else:
        dice = 2 * tp / (2 * tp + fp + fn)
        iou = tp / (tp + fp + fn)
    return {"Dice": dice, "IoU": iou, "FP": fp, "TP": tp, "FN": fn, "TN": tn,
            "n_pred": fp + tp, "n_ref": fn + tp}


def case_metrics(pred: np.ndarray, ref: np.ndarray, labels: list) -> dict:
    """{"metrics": {"<label>": {...}}} for one case; shapes must match."""
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {ref.shape}")
    return {"metrics": {key_of(label): class_counts(pred, ref, label) for label in labels}}


def summarize(per_case: list[dict], labels: list) -> dict:
    """nnU-Net's summary.json: metric_per_case, mean per class, foreground_mean."""
    mean: dict[str, dict[str, float]] = {}
    for label in labels:
        key = key_of(label)
        mean[key] = {}
        for m in METRICS:
            values = np.array([c["metrics"][key][m] for c in per_case], dtype=float)
            if values.size == 0 or np.all(np.isnan(values)):
                mean[key][m] = float("nan")
            else:
                mean[key][m] = float(np.nanmean(values))
    foreground_mean = {m: float(np.mean([mean[key_of(lb)][m] for lb in labels])) if labels
                       else float("nan") for m in METRICS}
    return {"metric_per_case": per_case, "mean": mean, "foreground_mean": foreground_mean}
