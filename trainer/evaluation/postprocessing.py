"""Keep-the-largest-connected-component postprocessing, decided the nnU-Net way.

First "all foreground together" (one mask of every foreground class): applied if it raises
the foreground-mean Dice and no class gets worse. Then, on top of that, per class: applied
to a class if it raises that class's mean Dice. Comparisons use the cross-validation cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage


def largest_component_mask(mask: np.ndarray) -> np.ndarray:
    """The largest 26/8-connected component of a boolean mask (empty stays empty)."""
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    lab, n = ndimage.label(mask, structure=structure)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def keep_largest_foreground(seg: np.ndarray) -> np.ndarray:
    """All foreground classes as one mask: voxels outside its largest component -> 0."""
    fg = seg > 0
    out = seg.copy()
    out[fg & ~largest_component_mask(fg)] = 0
    return out


def keep_largest_of_class(seg: np.ndarray, label: int) -> np.ndarray:
    """One class: voxels of `label` outside its largest component -> 0."""
    m = seg == label
    out = seg.copy()
    out[m & ~largest_component_mask(m)] = 0
    return out


@dataclass
class Postprocessing:
    largest_component_all_foreground: bool = False
    largest_component_classes: list[int] = field(default_factory=list)

    def apply(self, seg: np.ndarray) -> np.ndarray:
        if self.largest_component_all_foreground:
            seg = keep_largest_foreground(seg)
        for label in self.largest_component_classes:
            seg = keep_largest_of_class(seg, label)
        return seg

    def to_dict(self) -> dict:
        return {"largest_component_all_foreground": self.largest_component_all_foreground,
                "largest_component_classes": list(self.largest_component_classes)}

    @classmethod
    def from_dict(cls, d: dict) -> "Postprocessing":
        return cls(bool(d.get("largest_component_all_foreground", False)),
                   [int(c) for c in d.get("largest_component_classes", [])])


def _mean_dice(values: list[float]) -> float:
    arr = np.array(values, dtype=float)
    return float("nan") if arr.size == 0 or np.all(np.isnan(arr)) else float(np.nanmean(arr))


def _better(new: float, old: float) -> bool:
    """Strictly better, NaN-aware (a class absent everywhere never decides anything)."""
    if np.isnan(new):
        return False
    return np.isnan(old) or new > old


def _not_worse(new: float, old: float) -> bool:
    if np.isnan(old):
        return True
    return not np.isnan(new) and new >= old


def decide(cases, foreground: list[int]) -> tuple[Postprocessing, dict]:
    """Decide postprocessing from (prediction, reference) pairs, one case in memory at a time.

    Returns the decision and a report of the mean Dice per class of every variant tried.
    """
    from trainer.evaluation.metrics import class_counts

    base = {c: [] for c in foreground}
    allfg = {c: [] for c in foreground}
    per_class_on_base = {c: [] for c in foreground}
    per_class_on_all = {c: [] for c in foreground}
    n = 0
    for pred, ref in cases:
        n += 1
        a = keep_largest_foreground(pred)
        for c in foreground:
            base[c].append(class_counts(pred, ref, c)["Dice"])
            allfg[c].append(class_counts(a, ref, c)["Dice"])
            per_class_on_base[c].append(class_counts(keep_largest_of_class(pred, c), ref, c)["Dice"])
            per_class_on_all[c].append(class_counts(keep_largest_of_class(a, c), ref, c)["Dice"])
    mb = {c: _mean_dice(v) for c, v in base.items()}
    ma = {c: _mean_dice(v) for c, v in allfg.items()}
    fg_b = float(np.mean(list(mb.values()))) if mb else float("nan")
    fg_a = float(np.mean(list(ma.values()))) if ma else float("nan")
    use_all = (n > 0 and _better(fg_a, fg_b) and all(_not_worse(ma[c], mb[c]) for c in foreground))
    current = ma if use_all else mb
    candidates = per_class_on_all if use_all else per_class_on_base
    classes = []
    final = dict(current)
    for c in foreground:
        m = _mean_dice(candidates[c])
        if _better(m, current[c]):
            classes.append(c)
            final[c] = m
    report = {
        "cases": n,
        "dice_per_class_before": {str(c): mb[c] for c in foreground},
        "foreground_mean_dice_before": fg_b,
        "dice_per_class_all_foreground_lcc": {str(c): ma[c] for c in foreground},
        "foreground_mean_dice_all_foreground_lcc": fg_a,
        "dice_per_class_after": {str(c): final[c] for c in foreground},
        "foreground_mean_dice_after": float(np.mean(list(final.values()))) if final else float("nan"),
    }
    return Postprocessing(use_all, classes), report
