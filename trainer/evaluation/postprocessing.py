"""Keep-the-largest-connected-component postprocessing, decided the nnU-Net way.

First "all foreground together" (one mask of every foreground class): applied if it raises
the foreground-mean Dice and no class gets worse. Then, on top of that, per class: applied
to a class if it raises that class's mean Dice. Comparisons use the cross-validation cases.

Region-based datasets (nnU-Net's determine_postprocessing with label_manager.has_regions):
the same all-foreground step, scored per region; then per region in dataset.json order, each
on top of the ones already accepted (regions overlap, so removing a component of one region
changes another): the largest component of the region's mask (the union of its labels) is
kept, the rest becomes background, accepted if it raises that region's mean Dice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

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


def keep_largest_of_class(seg: np.ndarray, label) -> np.ndarray:
    """One class (or region, a tuple of labels): its voxels outside its largest component -> 0."""
    from trainer.evaluation.metrics import mask_of
    m = mask_of(seg, label)
    out = seg.copy()
    out[m & ~largest_component_mask(m)] = 0
    return out


@dataclass
class Postprocessing:
    largest_component_all_foreground: bool = False
    largest_component_classes: list[int] = field(default_factory=list)
    # region-based datasets: regions (tuples of labels), applied in this order
    largest_component_regions: list[tuple[int, ...]] = field(default_factory=list)

    def apply(self, seg: np.ndarray) -> np.ndarray:
        if self.largest_component_all_foreground:
            seg = keep_largest_foreground(seg)
        for label in [*self.largest_component_classes, *self.largest_component_regions]:
            seg = keep_largest_of_class(seg, label)
        return seg

    def to_dict(self) -> dict:
        d = {"largest_component_all_foreground": self.largest_component_all_foreground,
             "largest_component_classes": list(self.largest_component_classes)}
        if self.largest_component_regions:     # plain-label files stay as they were
            d["largest_component_regions"] = [list(r) for r in self.largest_component_regions]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Postprocessing":
        return cls(bool(d.get("largest_component_all_foreground", False)),
                   [int(c) for c in d.get("largest_component_classes", [])],
                   [tuple(int(v) for v in r) for r in d.get("largest_component_regions", [])])


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


def _use_all_foreground(before: dict, after: dict, n: int) -> bool:
    """nnU-Net's rule: the foreground mean rises and no class or region gets worse."""
    fg_b = float(np.mean(list(before.values()))) if before else float("nan")
    fg_a = float(np.mean(list(after.values()))) if after else float("nan")
    return n > 0 and _better(fg_a, fg_b) and all(_not_worse(after[c], before[c]) for c in before)


def decide(cases: Iterable | Callable[[], Iterable], keys: list) -> tuple[Postprocessing, dict]:
    """Decide postprocessing from (prediction, reference) pairs, one case in memory at a time.

    `keys`: the foreground labels, or the regions (tuples of labels) of a region-based dataset.
    Regions need several passes over the cases: give a callable returning a fresh iterator
    (anything else is read into a list first). Returns the decision and a report of the mean
    Dice per class or region of every variant tried.
    """
    if any(isinstance(k, (tuple, list)) for k in keys):
        regions = [tuple(int(v) for v in k) for k in keys]
        return _decide_regions(cases if callable(cases) else _replay(cases), regions)
    return _decide_labels(cases() if callable(cases) else cases, keys)


def _replay(cases: Iterable) -> Callable[[], Iterable]:
    kept = list(cases)
    return lambda: kept


def _report(keys: list, n: int, before: dict, all_fg: dict, final: dict) -> dict:
    from trainer.evaluation.metrics import key_of

    def fg_mean(d: dict) -> float:
        return float(np.mean(list(d.values()))) if d else float("nan")
    return {
        "cases": n,
        "dice_per_class_before": {key_of(c): before[c] for c in keys},
        "foreground_mean_dice_before": fg_mean(before),
        "dice_per_class_all_foreground_lcc": {key_of(c): all_fg[c] for c in keys},
        "foreground_mean_dice_all_foreground_lcc": fg_mean(all_fg),
        "dice_per_class_after": {key_of(c): final[c] for c in keys},
        "foreground_mean_dice_after": fg_mean(final),
    }


def _decide_labels(cases, foreground: list[int]) -> tuple[Postprocessing, dict]:
    """Plain labels: one pass; a class's removal leaves every other class's Dice alone, so
    each class is decided independently on top of the all-foreground choice."""
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
    use_all = _use_all_foreground(mb, ma, n)
    current = ma if use_all else mb
    candidates = per_class_on_all if use_all else per_class_on_base
    classes = []
    final = dict(current)
    for c in foreground:
        m = _mean_dice(candidates[c])
        if _better(m, current[c]):
            classes.append(c)
            final[c] = m
    return Postprocessing(use_all, classes), _report(foreground, n, mb, ma, final)


def _decide_regions(passes: Callable[[], Iterable], regions: list[tuple[int, ...]]
                    ) -> tuple[Postprocessing, dict]:
    """Regions: one pass for the all-foreground step, then one per region, each scored on
    the cases as postprocessed so far (in dataset.json's order, as nnU-Net)."""
    def means(first, then) -> tuple[dict, dict, int]:
        """Mean Dice per region of first(prediction) and of then(first(prediction)); case count."""
        from trainer.evaluation.metrics import class_counts
        a, b = {r: [] for r in regions}, {r: [] for r in regions}
        n = 0
        for pred, ref in passes():
            n += 1
            seg = first(pred)
            for values, s in ((a, seg), (b, then(seg))):
                for r in regions:
                    values[r].append(class_counts(s, ref, r)["Dice"])
        return ({r: _mean_dice(v) for r, v in a.items()},
                {r: _mean_dice(v) for r, v in b.items()}, n)

    mb, ma, n = means(lambda p: p, keep_largest_foreground)
    post = Postprocessing(_use_all_foreground(mb, ma, n))
    final = ma if post.largest_component_all_foreground else mb
    for r in regions if n and len(regions) > 1 else []:     # nnU-Net: only with several
        so_far = Postprocessing(post.largest_component_all_foreground, [],
                                list(post.largest_component_regions))
        # measured afresh: a region accepted before may have changed this one's Dice
        now, cut, _ = means(so_far.apply, lambda s, r=r: keep_largest_of_class(s, r))
        if _better(cut[r], now[r]):
            post.largest_component_regions.append(r)
            final = cut
        else:
            final = now
    return post, _report(regions, n, mb, ma, final)
