"""What makes two machines' folds interchangeable: the digests of the plan, the splits and the
dataset fingerprint (docs/transfer.md, "Digests"). `foldwatch pack` writes them into an archive's
manifest, `foldwatch import` computes them for its own experiment and compares: defined here
only, so both sides agree.

A digest is `sha256:` + the hex SHA-256 of the subject's canonical JSON: keys sorted, no
whitespace (`,` and `:`), UTF-8, NaN and infinities as null, and every float written with 10
significant digits (`float(format(x, ".10g"))`), so the same dataset planned by two numpy
builds, which may differ in a mean's last bits, gets the same digest. The subjects:

| kind | plan (per configuration) | splits | fingerprint |
|---|---|---|---|
| foldwatch | `plans/<cfg>.json` as written | `splits.json`, each fold's `train`/`val` sorted | `fingerprint.json` without `dataset` (a path on one machine) |
| nnunetv2 | the configuration's entry of nnU-Net's plans file with `inherits_from` resolved, plus the plans-wide `dataset_name`, `plans_name`, `transpose_forward/backward`, `foreground_intensity_properties_per_channel`, and `labels`/`regions_class_order` of dataset.json | `splits_final.json`, each fold's `train`/`val` sorted | `dataset_fingerprint.json` |
| command | the `command:` section without `cwd` and `env` (machine-specific) | none | none |
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

SIGNIFICANT = 10        # digits a float keeps in the canonical form


def _norm(obj: Any) -> Any:
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return float(format(obj, f".{SIGNIFICANT}g")) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _norm(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_norm(v) for v in obj]
    raise TypeError(f"cannot digest a {type(obj).__name__}")


def canonical(obj: Any) -> bytes:
    """The canonical JSON bytes of `obj` (see the module docstring)."""
    return json.dumps(_norm(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def digest(obj: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical(obj)).hexdigest()


# -- the subjects ------------------------------------------------------------------------------
def splits_subject(splits: Any) -> list[dict]:
    """Both kinds' splits: [{"train": [...], "val": [...]}, ...], each list sorted."""
    if not isinstance(splits, list):
        raise ValueError("expected a list of folds")
    out = []
    for entry in splits:
        if not isinstance(entry, dict) or not {"train", "val"} <= set(entry):
            raise ValueError("each fold needs 'train' and 'val' case lists")
        out.append({"train": sorted(map(str, entry["train"])),
                    "val": sorted(map(str, entry["val"]))})
    return out


def foldwatch_plan_subject(plan: dict) -> dict:
    return dict(plan)


def foldwatch_fingerprint_subject(fingerprint: dict) -> dict:
    return {k: v for k, v in fingerprint.items() if k != "dataset"}


NNUNET_PLANS_KEYS = ("dataset_name", "plans_name", "transpose_forward", "transpose_backward",
                     "foreground_intensity_properties_per_channel")


def nnunet_configuration(plans: dict, configuration: str) -> dict:
    """A configuration of nnU-Net's plans with `inherits_from` resolved, as nnU-Net's
    PlansManager does (3d_cascade_fullres inherits from 3d_fullres, for instance)."""
    configs = plans.get("configurations")
    if not isinstance(configs, dict) or configuration not in configs:
        have = ", ".join(configs) if isinstance(configs, dict) else "none"
        raise ValueError(f"no configuration {configuration!r} (has: {have})")
    entry, seen = dict(configs[configuration]), {configuration}
    while "inherits_from" in entry:
        parent = entry.pop("inherits_from")
        if parent in seen or parent not in configs:
            raise ValueError(f"configuration {configuration!r} inherits from {parent!r}, "
                             "which is missing or circular")
        seen.add(parent)
        entry = {**configs[parent], **entry}
    return entry


def nnunet_plan_subject(plans: dict, configuration: str, dataset_json: dict) -> dict:
    return {"configuration": nnunet_configuration(plans, configuration),
            **{k: plans.get(k) for k in NNUNET_PLANS_KEYS},
            "labels": dataset_json.get("labels"),
            "regions_class_order": dataset_json.get("regions_class_order")}


def nnunet_fingerprint_subject(fingerprint: dict) -> dict:
    return dict(fingerprint)


COMMAND_PLAN_KEYS = ("argv", "resume_args", "checkpoints", "metrics", "pattern", "first_epoch",
                     "epochs")


def command_plan_subject(command: dict) -> dict:
    return {k: command.get(k) for k in COMMAND_PLAN_KEYS}
