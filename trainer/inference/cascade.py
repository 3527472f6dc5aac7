"""3d_lowres -> 3d_cascade_fullres: the previous stage's prediction as one-hot input channels.

nnU-Net's cascade: every training case of stage 2 reads the stage-1 segmentation made by
the 3d_lowres fold that did NOT train on it (its validation output), resampled to the
full-resolution grid; the loader crops it with the image patch, augments it like a label map
and appends it one-hot (one channel per foreground label) to the image channels. At test time
the 3d_lowres ensemble predicts first.

Here the lowres validation probabilities (`validation/<case>.npz`, original geometry) are
brought onto the cascade's preprocessed grid with the case's own crop box and linear
interpolation, then turned into labels (argmax; for region-based datasets each region's
sigmoid > 0.5 painted in regions_class_order, as nnU-Net's convert_logits_to_segmentation),
and cached as
`preprocessed/3d_cascade_fullres/previous_stage/<case>_prev.npy` with a stamp of the source
file, so a retrained lowres fold is picked up and an unchanged one is not redone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from contracts.errors import DatasetError
from contracts.experiment import LOWRES, Experiment
from contracts.jsonio import atomic_write_file, atomic_write_json

from trainer.data.labelmaps import read_probabilities, to_label_map
from trainer.planning.plans import Plan

SUBDIR = "previous_stage"


def previous_stage_dir(cascade_folder: Path) -> Path:
    return Path(cascade_folder) / SUBDIR


def to_cascade_grid(probs_original: np.ndarray, props: dict, label_values: list[int],
                    regions_class_order: list[int] | None = None) -> np.ndarray:
    """(K, I, J, K') probabilities on the original grid -> (Z, Y, X) labels on the case's grid.

    K: one softmax channel per label, or one sigmoid per region when regions_class_order is given.
    """
    from trainer.data.geometry import crop, resize, to_canonical
    canon = to_canonical(np.asarray(probs_original, np.float32),
                         np.asarray(props["original"]["orientation_transform"]))
    cropped = crop(canon, props["crop_box"])
    probs = resize(np.ascontiguousarray(cropped), props["shape"], order=1)
    return to_label_map(probs, label_values, regions_class_order)


def one_hot(prev: np.ndarray, foreground: list[int]) -> np.ndarray:
    """(F, ...) float32: one channel per foreground label (nnU-Net's MoveSegAsOneHotToData)."""
    return np.stack([(prev == v) for v in foreground]).astype(np.float32)


def _stamp(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def prepare_previous_stage(exp: Experiment, plan: Plan, folder: Path, cases: list[str],
                           log=None) -> Path:
    """Cache the lowres prediction of each case on the cascade grid; returns the cache folder.

    DatasetError names every case whose lowres prediction is missing and the fold to finish.
    """
    from trainer.evaluation.crossval import case_folds
    from trainer.planning.preprocessed import load_case

    out = previous_stage_dir(folder)
    out.mkdir(parents=True, exist_ok=True)
    folds_of = case_folds(exp)
    sources, problems = {}, []
    for case in cases:
        fold = folds_of.get(case)
        if fold is None:
            problems.append(f"{case}: not a validation case of any fold in splits.json, so no "
                            f"{LOWRES} fold predicted it")
            continue
        src = exp.layout.validation(LOWRES, fold) / f"{case}.npz"
        if not src.exists():
            problems.append(f"{src}: missing; finish {LOWRES}/{fold} (train, or resume it to "
                            "complete its validation)")
        sources[case] = src
    if problems:
        raise DatasetError(problems, header=f"{plan.configuration} needs {LOWRES}'s predictions")
    values = sorted(plan.labels.values())
    for i, case in enumerate(cases):
        target, meta = out / f"{case}_prev.npy", out / f"{case}_prev.json"
        stamp = {"source": str(sources[case]), "stat": _stamp(sources[case])}
        if plan.regions_class_order:   # region caches made by argmax before it was fixed are redone
            stamp["regions_class_order"] = list(plan.regions_class_order)
        try:
            if target.exists() and json.loads(meta.read_text()) == stamp:
                continue
        except (OSError, ValueError):
            pass
        _, _, props = load_case(folder, case, mmap=True)
        prev = to_cascade_grid(read_probabilities(sources[case]), props, values,
                               plan.regions_class_order)
        if list(prev.shape) != list(props["shape"]):
            raise DatasetError(f"{case}: lowres prediction maps to {list(prev.shape)}, the "
                               f"cascade's data is {props['shape']}; re-run preprocessing")
        atomic_write_file(target, lambda f: np.save(f, prev))
        atomic_write_json(meta, stamp, indent=None)      # last: the commit
        if log:
            log.progress("previous stage", i + 1, len(cases), case=case)
    return out


def load_previous(prev_dir: Path, case: str, mmap: bool = True) -> np.ndarray:
    path = Path(prev_dir) / f"{case}_prev.npy"
    try:
        return np.load(path, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise DatasetError(f"{path}: the previous stage's prediction of {case} is missing; "
                           "resume the fold (it is rebuilt from 3d_lowres' validation)") from None


def with_previous(data: np.ndarray, prev: np.ndarray, plan: Plan) -> np.ndarray:
    """The network input of a cascade case: image channels, then one-hot previous stage."""
    return np.concatenate([np.asarray(data, np.float32),
                           one_hot(np.asarray(prev), plan.foreground_labels)])
