"""A tiny cascade experiment on disk: train_fixture's cases with full geometry, a cascade plan,
and 3d_lowres validation probabilities (the lowres folds' outputs) for every case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from train_fixture import SHAPE, write_experiment
from trainer.data.geometry import from_canonical
from trainer.data.labelmaps import atomic_npz
from trainer.planning.plans import Plan

IDENTITY = [[0, 1], [1, 1], [2, 1]]    # an identity affine's orientation transform


def write_cascade_experiment(tmp: Path, **kw) -> Path:
    """The experiment YAML; lowres 'predictions' are the truth with a few voxels flipped."""
    exp_path = write_experiment(tmp, **kw)
    root = tmp / "results" / "tiny"
    full = root / "preprocessed" / "3d_fullres"
    casc = root / "preprocessed" / "3d_cascade_fullres"
    full.rename(casc)
    plan = Plan.load(root / "plans" / "3d_fullres.json")
    (root / "plans" / "3d_fullres.json").unlink()
    plan.configuration, plan.previous_stage = "3d_cascade_fullres", "3d_lowres"
    plan.save(root / "plans" / "3d_cascade_fullres.json")
    splits = json.loads((root / "splits.json").read_text())
    fold_of = {c: k for k in range(5) for c in splits[k]["val"]}
    rng = np.random.default_rng(7)
    for case, fold in fold_of.items():
        meta = casc / f"{case}.json"
        props = json.loads(meta.read_text())
        props.update(original={"affine": np.eye(4).tolist(), "shape": list(SHAPE[::-1]),
                               "orientation_transform": IDENTITY, "spacing_zyx": [1.0, 1.0, 1.0]},
                     canonical_shape=list(SHAPE), crop_box=[[0, n] for n in SHAPE],
                     cropped_shape=list(SHAPE))
        meta.write_text(json.dumps(props))
        seg = np.load(casc / f"{case}_seg.npy").astype(np.int64)
        noisy = np.where(rng.random(seg.shape) < 0.02, rng.integers(0, 3, seg.shape), seg)
        probs = np.stack([(noisy == k) for k in range(3)]).astype(np.float32) * 0.9 + 0.05
        out = root / "3d_lowres" / f"fold_{fold}" / "validation"
        out.mkdir(parents=True, exist_ok=True)
        atomic_npz(out / f"{case}.npz", from_canonical(probs, np.asarray(IDENTITY)))
    exp = yaml.safe_load(exp_path.read_text())
    cfg = exp["configurations"].pop("3d_fullres")
    exp["configurations"] = {"3d_lowres": dict(cfg), "3d_cascade_fullres": cfg}
    exp_path.write_text(yaml.safe_dump(exp))
    return exp_path
