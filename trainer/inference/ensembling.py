"""Ensembles of configurations: the mean of their probabilities, one case at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from contracts.errors import DatasetError
from contracts.experiment import Experiment

from trainer.data.labelmaps import read_labels, read_probabilities, to_label_map


def average_probabilities(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of same-shaped (K, ...) probability arrays."""
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise DatasetError(f"cannot average probabilities of different shapes: {sorted(shapes)}")
    acc = np.zeros(arrays[0].shape, np.float32)
    for a in arrays:
        acc += a
    return acc / len(arrays)


def validation_prediction(exp: Experiment, members: Sequence[str], case: str, fold: int,
                          label_values: list[int],
                          regions_class_order: list[int] | None = None) -> np.ndarray:
    """A validation case's label map from one configuration, or the mean of several."""
    layout = exp.layout
    if len(members) == 1:
        return read_labels(layout.validation(members[0], fold) / f"{case}.nii.gz")[0]
    probs = [read_probabilities(layout.validation(m, fold) / f"{case}.npz") for m in members]
    return to_label_map(average_probabilities(probs), label_values, regions_class_order)


def reference_files(exp: Experiment) -> dict[str, Path]:
    """Training case id -> its label file, from the dataset."""
    from trainer.data.datasets import load_dataset
    info = load_dataset(exp.dataset_path)
    return {c.case_id: c.label for c in info.cases if c.label is not None}


def iter_validation_pairs(exp: Experiment, members: Sequence[str], folds_of: dict[str, int],
                          label_values: list[int], regions_class_order: list[int] | None = None
                          ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(case, prediction, reference) for every validation case, one in memory at a time."""
    refs = reference_files(exp)
    missing = sorted(c for c in folds_of if c not in refs)
    if missing:
        raise DatasetError(f"validation case(s) {', '.join(missing[:10])} have no label file in "
                           f"{exp.dataset_path}")
    for case, fold in sorted(folds_of.items()):
        pred = validation_prediction(exp, members, case, fold, label_values, regions_class_order)
        ref = read_labels(refs[case])[0]
        if pred.shape != ref.shape:
            raise DatasetError(f"{case}: prediction shape {pred.shape} differs from its reference "
                               f"{refs[case]} {ref.shape}")
        yield case, pred, ref
