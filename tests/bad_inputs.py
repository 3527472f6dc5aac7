"""Builders for the bad-input table (tests/test_bad_inputs.py): tiny, valid inputs to break.

Each builder writes into a fresh folder and returns the command line (after `python -m
trainer`) that must refuse the broken input.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import yaml

from train_fixture import write_experiment as write_trained_experiment

SHAPE = (8, 8, 6)


def nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))


def dataset(root: Path, *, cases=2, channels=1, **meta_changes) -> Path:
    """A valid nnU-Net v2 raw dataset of `cases` 8x8x6 cases (labels 0/1)."""
    rng = np.random.default_rng(0)
    for i in range(cases):
        for c in range(channels):
            nifti(root / "imagesTr" / f"C_{i:03d}_{c:04d}.nii.gz",
                  rng.normal(0, 1, SHAPE).astype(np.float32))
        seg = np.zeros(SHAPE, np.uint8)
        seg[2:5, 2:5, 1:4] = 1
        nifti(root / "labelsTr" / f"C_{i:03d}.nii.gz", seg)
    meta = {"channel_names": {str(c): f"MR{c}" for c in range(channels)},
            "labels": {"background": 0, "organ": 1}, "numTraining": cases,
            "file_ending": ".nii.gz"}
    meta.update(meta_changes)
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def check(root: Path) -> list[str]:
    return ["check-dataset", str(root), "--workers", "1"]


def experiment_file(tmp: Path, text: str | bytes, name="bad.yaml") -> list[str]:
    f = tmp / name
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    return ["plan", "--experiment", str(f), "--workers", "1", "--skip-check"]


GOOD = ("experiment: e\ndataset: data\nconfigurations:\n  3d_fullres:\n    epochs: 2\n"
        "    batch_size: 2\n")


def trained(tmp: Path) -> Path:
    """A tiny preprocessed experiment (no training yet); returns its YAML."""
    return write_trained_experiment(tmp, epochs=1, ipe=1, num_workers=0)


def ckpt_dir(exp: Path) -> Path:
    d = exp.parent / "results/tiny/3d_fullres/fold_0/checkpoints"
    d.mkdir(parents=True, exist_ok=True)
    return d


def fake_checkpoint(**changes) -> dict:
    """A checkpoint dict with every required key (the weights do not matter for refusals)."""
    state = {"format": 1, "model": {}, "optimizer": {}, "scaler": {}, "epoch": 1, "iter": 0,
             "finished": False, "ema_dice": None, "best_ema": None, "history": [],
             "partial": {}, "torch_rng": torch.get_rng_state(), "cuda_rng": [],
             "plan_digest": "0" * 16, "hparams_hash": "0" * 16, "hparams": {},
             "configuration": "3d_fullres"}
    state.update(changes)
    return state


def train(exp: Path, *more: str) -> list[str]:
    return ["train", "--experiment", str(exp), "--configuration", "3d_fullres", "--fold", "0",
            *more]


def yaml_text(**changes) -> str:
    data = yaml.safe_load(GOOD)
    data.update(changes)
    return yaml.safe_dump(data)
