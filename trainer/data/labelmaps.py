"""Label maps (NIfTI) and probability files (.npz): reading them, and writing them atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from contracts.errors import DatasetError
from contracts.jsonio import atomic_write_file, atomic_write_named


def read_labels(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels as int16, affine) of a NIfTI label map (or a slice mask); DatasetError when unreadable."""
    import nibabel as nib
    from trainer.data import slices
    if slices.is_slice_file(path):
        from trainer.data.geometry import load_label
        data, affine = load_label(path)
        return np.rint(data).astype(np.int16), affine
    try:
        img = nib.load(str(path))
        return np.asarray(img.dataobj).astype(np.int16), np.asarray(img.affine)
    except Exception as e:  # nibabel raises several types for broken files
        raise DatasetError(f"{path}: not a readable NIfTI label map ({e})") from None


def read_probabilities(path: str | Path) -> np.ndarray:
    """The `probabilities` array (K, I, J, K') of a validation/prediction .npz, as float32."""
    try:
        with np.load(path) as f:
            return f["probabilities"].astype(np.float32)
    except FileNotFoundError:
        raise DatasetError(f"{path}: probabilities missing; re-run the fold's validation "
                           "(`python -m trainer train ... --resume`)") from None
    except (KeyError, ValueError, OSError) as e:
        raise DatasetError(f"{path}: unreadable probabilities file ({e})") from None


def argmax_labels(probs: np.ndarray, label_values: list[int]) -> np.ndarray:
    """Class probabilities -> label map with the dataset's label values."""
    return np.asarray(sorted(label_values), dtype=np.int16)[np.argmax(probs, 0)]


def to_label_map(probs: np.ndarray, label_values: list[int],
                 regions_class_order: list[int] | None = None) -> np.ndarray:
    """Probabilities -> label map: argmax, or for regions nnU-Net's painting of each region
    with probability > 0.5 in regions_class_order (later regions overwrite earlier ones)."""
    if not regions_class_order:
        return argmax_labels(probs, label_values)
    seg = np.zeros(probs.shape[1:], dtype=np.int16)
    for i, value in enumerate(regions_class_order):
        seg[probs[i] > 0.5] = value
    return seg


def same_geometry(shape_a, affine_a, shape_b, affine_b, atol: float = 1e-3) -> bool:
    return tuple(shape_a) == tuple(shape_b) and np.allclose(affine_a, affine_b, atol=atol)


def atomic_npz(path: Path, probabilities: np.ndarray) -> None:
    """`probabilities` as float16 in a compressed .npz, written atomically."""
    atomic_write_file(path, lambda f: np.savez_compressed(
        f, probabilities=probabilities.astype(np.float16)))


def atomic_nifti(labels: np.ndarray, props: dict, path: Path) -> None:
    """A label map in the original geometry, written atomically."""
    from trainer.data.geometry import save_nifti
    atomic_write_named(path, lambda tmp: save_nifti(labels, props, tmp))
