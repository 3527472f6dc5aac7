"""What differs between the plan, splits or fingerprint a fold was trained with and this
experiment's, said in people's terms ("patch size: the fold was trained with [96, 160, 160],
this experiment plans [80, 160, 160]"), with what to do about it."""

from __future__ import annotations

from typing import Any

from contracts import digests as d

MAX_LINES = 8
NAMES = {"patch_size": "patch size", "spacing": "spacing (mm)", "batch_size": "batch size",
         "median_shape": "median image shape", "median_image_size_in_voxels": "median image shape",
         "kernel_sizes": "convolution kernels", "strides": "pooling strides",
         "filters": "features per level", "normalization": "intensity normalization",
         "normalization_schemes": "intensity normalization", "labels": "labels",
         "channel_names": "image channels", "network": "network", "previous_stage": "cascade input",
         "architecture": "network architecture", "dataset_name": "dataset name",
         "plans_name": "plans name", "transpose_forward": "axis order",
         "foreground_intensity_properties_per_channel": "foreground intensity statistics",
         "case_ids": "cases", "spacings": "case spacings", "shapes_after_crop": "case shapes",
         "median_spacing": "median spacing", "foreground_intensity": "foreground intensity",
         "class_voxel_fraction": "label voxel fractions", "regions": "regions"}


def _short(v: Any, limit: int = 90) -> str:
    text = str(v).replace("'", "")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys; lists stay values (a list is shown whole, shortened)."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


def _name(path: str) -> str:
    last = path.rsplit(".", 1)[-1]
    named = NAMES.get(last)
    return f"{named} ({path})" if named and named != path else path


def dict_lines(theirs: dict, ours: dict, verb: str) -> list[str]:
    """`key: the fold was trained with X, this experiment <verb> Y` for each differing key."""
    a = _flatten(d._norm(theirs))
    b = _flatten(d._norm(ours))
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            was = "(absent)" if key not in a else _short(a[key])
            now = "(absent)" if key not in b else _short(b[key])
            out.append(f"{_name(key)}: the fold was trained with {was}, this experiment "
                       f"{verb} {now}")
    return _capped(out)


def _capped(lines: list[str]) -> list[str]:
    if len(lines) > MAX_LINES:
        return lines[:MAX_LINES] + [f"... and {len(lines) - MAX_LINES} more differences"]
    return lines


def _cases(names) -> str:
    names = sorted(names)
    return ", ".join(names[:6]) + (f" (+{len(names) - 6} more)" if len(names) > 6 else "")


def splits_lines(theirs: list, ours: list, folds: list[int] | None = None) -> list[str]:
    """Which folds' cases differ (the folds being imported first)."""
    a, b = d.splits_subject(theirs), d.splits_subject(ours)
    out = []
    if len(a) != len(b):
        out.append(f"the archive's splits have {len(a)} folds, this experiment's {len(b)}")
    all_a = {c for f in a for c in f["train"] + f["val"]}
    all_b = {c for f in b for c in f["train"] + f["val"]}
    if all_a != all_b:
        out.append(f"the archive's splits cover {len(all_a)} cases, this experiment's "
                   f"{len(all_b)}" + (f"; only in the archive: {_cases(all_a - all_b)}"
                                      if all_a - all_b else "")
                   + (f"; only here: {_cases(all_b - all_a)}" if all_b - all_a else ""))
    order = sorted(range(min(len(a), len(b))), key=lambda k: (k not in (folds or []), k))
    for k in order:
        va, vb = set(a[k]["val"]), set(b[k]["val"])
        if va != vb:
            out.append(f"validation cases of fold {k}: the fold was trained holding out "
                       f"{_cases(va - vb) or 'nothing else'}, this experiment holds out "
                       f"{_cases(vb - va) or 'nothing else'}")
        elif set(a[k]["train"]) != set(b[k]["train"]):
            out.append(f"training cases of fold {k} differ")
    return _capped(out)


def fingerprint_lines(theirs: dict, ours: dict) -> list[str]:
    out = []
    ca, cb = theirs.get("case_ids"), ours.get("case_ids")
    na = len(ca) if isinstance(ca, list) else len(theirs.get("spacings") or [])
    nb = len(cb) if isinstance(cb, list) else len(ours.get("spacings") or [])
    if na != nb:
        out.append(f"the dataset has {nb} cases here; the fold's dataset had {na}")
    if isinstance(ca, list) and isinstance(cb, list) and set(ca) != set(cb):
        out.append(f"cases only in the fold's dataset: {_cases(set(ca) - set(cb)) or 'none'}; "
                   f"only here: {_cases(set(cb) - set(ca)) or 'none'}")
    rest = {k: v for k, v in theirs.items() if k not in ("case_ids", "dataset")}
    mine = {k: v for k, v in ours.items() if k not in ("case_ids", "dataset")}
    if not out or d.canonical(rest) != d.canonical(mine):
        out += [line.replace("this experiment has", "here it is")
                for line in dict_lines(rest, mine, "has")]
    return _capped(out)


def nnunet_validation_lines(fold: int, validated: set[str], ours: list) -> list[str]:
    """A plain nnU-Net fold carries no splits: its validation cases must be this
    experiment's validation cases of the same fold."""
    b = d.splits_subject(ours)
    if fold >= len(b):
        return [f"this experiment's splits_final.json has no fold {fold} ({len(b)} folds)"]
    vb = set(b[fold]["val"])
    if validated == vb:
        return []
    return [f"validation cases of fold {fold}: the fold validated "
            f"{_cases(validated - vb) or 'nothing else'}, this experiment's splits_final.json "
            f"holds out {_cases(vb - validated) or 'nothing else'}"]


FIXES = {
    "plan": "Both machines must train with the same plan: plan once, copy the plan "
            "(results/<exp>/plans/<cfg>.json, or nnU-Net's plans file) to the other machine "
            "before its folds train, or train the fold again here",
    "splits": "Both machines must use the same splits: copy one machine's splits file to the "
              "other before training (the experiment's `splits:` key pins them; nnU-Net reads "
              "splits_final.json from the preprocessed dataset folder), or train the fold again "
              "here",
    "command": "The fold was trained by another program or with other arguments: use the "
               "same experiment file on both machines",
    "fingerprint": "The fold was trained on a different dataset (other cases or other files): "
                   "use the same dataset on both machines",
}
