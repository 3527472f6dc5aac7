"""From NIfTI voxels to the network's grid and back.

Forward (the same steps for training cases and for new images):
  1. reorient to RAS+ (nibabel orientation transforms, like as_closest_canonical) and
     transpose to (z, y, x);
  2. crop to the body: the bounding box of voxels above -500 HU in CT channels (air is cut
     away), of non-zero voxels in other channels, and of any labelled voxel;
  3. normalize per channel (CT: clip to the foreground 0.5-99.5 percentiles, z-score with
     the foreground mean/std; otherwise per-case z-score) -- before resampling, as nnU-Net
     does, so cubic overshoot is not clipped away and z-scores use the original voxels;
  4. resample to the plan's spacing with nnU-Net's rules (trainer.data.resampling): image
     order 3, labels order 1 per label, order 0 across thick slices.
`props` records the original affine/shape, the orientation transform and the crop box, so
`to_original` / `labels_to_original` put predictions back on the original voxel grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from contracts.errors import DatasetError

from trainer.data.resampling import (new_shape, resample_image, resample_labels,
                                     resample_probabilities)
from trainer.planning.plans import Plan

RAS = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
CT_BODY_HU = -500.0          # above: body; below: air (cropped away)


def seg_dtype(max_label: int) -> np.dtype:
    """The cache's label dtype: uint8 up to 255, int16 beyond (TotalSegmentator has 117 + background)."""
    if max_label <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if max_label <= np.iinfo(np.int16).max:
        return np.dtype(np.int16)
    raise ValueError(f"label value {max_label} is above {np.iinfo(np.int16).max}; not supported")


def is_ct(channel_name: str) -> bool:
    """nnU-Net's rule: a channel named CT gets CT normalization."""
    return channel_name.strip().lower() == "ct"


def load_nifti(path: str | Path, channels: bool = False):
    """(data float32 (I, J, K), affine, image); DatasetError for unreadable or non-3D files.

    channels=True also accepts an MSD-style 4D file (I, J, K, C), returned as it is.
    PNG/JPEG/... slices (trainer.data.slices) read as (x, y, 1) volumes, colour as 4D.
    """
    from trainer.data import slices
    if slices.is_slice_file(path):
        data, affine = slices.read_image(path)
        if data.ndim == 4 and not channels:
            raise DatasetError(f"{path}: a colour image where one channel is expected")
        return data, affine, None
    import nibabel as nib
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except Exception as e:  # nibabel raises several kinds for truncated/garbled files
        raise DatasetError(f"{path}: not a readable NIfTI file ({type(e).__name__}: {e}); "
                           "re-export it") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3 and not (channels and data.ndim == 4):
        raise DatasetError(f"{path}: {_dimensionality_advice(data.shape)}")
    return data, img.affine.astype(np.float64), img


def load_label(path: str | Path):
    """(labels float32 (I, J, K), affine) of a label file: NIfTI, or a slice mask mapped to classes."""
    from trainer.data import slices
    if slices.is_slice_file(path):
        return slices.read_mask(path), np.eye(4)
    data, affine, _ = load_nifti(path)
    return data, affine


def _dimensionality_advice(shape: tuple) -> str:
    """What is wrong with a non-3D file, in terms of what it actually is."""
    if len(shape) == 2:
        return (f"expected a 3D image, got a 2D image of shape {shape}; save 2D images as 3D "
                f"files with one slice, shape {(*shape, 1)} (nnU-Net's convention for 2D data)")
    if len(shape) == 4:
        return (f"expected a 3D image, got a 4D image of shape {shape} ({shape[3]} volumes); split "
                "it into one 3D file per channel (_0000, _0001, ...), or declare that many "
                "channels in dataset.json when it is one multi-channel case")
    return f"expected a 3D image, got a {len(shape)}D array of shape {shape}; re-export it as 3D"


def orientation_transform(affine: np.ndarray) -> np.ndarray:
    """nibabel orientation transform from the file's axes to RAS+."""
    import nibabel as nib
    return nib.orientations.ornt_transform(nib.orientations.io_orientation(affine), RAS)


def to_canonical(array: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """(..., I, J, K) file order -> (..., Z, Y, X) RAS+ order, leading axes kept."""
    import nibabel as nib
    lead = array.ndim - 3
    moved = np.moveaxis(array, list(range(lead)), list(range(3, 3 + lead))) if lead else array
    ras = nib.orientations.apply_orientation(moved, transform)
    ras = np.moveaxis(ras, list(range(3, 3 + lead)), list(range(lead))) if lead else ras
    return np.ascontiguousarray(np.swapaxes(ras, lead, lead + 2))


def from_canonical(array: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Inverse of to_canonical: (..., Z, Y, X) -> (..., I, J, K) in the file's axis order."""
    import nibabel as nib
    lead = array.ndim - 3
    ras = np.swapaxes(array, lead, lead + 2)
    inverse = nib.orientations.ornt_transform(RAS, _orig_ornt(transform))
    moved = np.moveaxis(ras, list(range(lead)), list(range(3, 3 + lead))) if lead else ras
    out = nib.orientations.apply_orientation(moved, inverse)
    out = np.moveaxis(out, list(range(3, 3 + lead)), list(range(lead))) if lead else out
    return np.ascontiguousarray(out)


def _orig_ornt(transform: np.ndarray) -> np.ndarray:
    """The file's own orientation, recovered from its transform to RAS+."""
    transform = np.asarray(transform, dtype=float)
    ornt = np.zeros((3, 2))
    for axis, (target, flip) in enumerate(transform):
        ornt[axis] = [target, flip]
    return ornt


def canonical_spacing(affine: np.ndarray, transform: np.ndarray) -> list[float]:
    """Voxel size along (z, y, x) of the canonical array."""
    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(0))   # per file axis
    ras = [0.0, 0.0, 0.0]
    for axis, (target, _) in enumerate(np.asarray(transform)):
        ras[int(target)] = float(zooms[axis])
    return ras[::-1]


def body_box(data: np.ndarray, channel_names: Sequence[str],
             seg: np.ndarray | None = None) -> list[list[int]]:
    """[[z0, z1], [y0, y1], [x0, x1]] of the body (see module docstring); all if nothing found."""
    mask = np.zeros(data.shape[1:], bool)
    for c, name in enumerate(channel_names):
        mask |= data[c] > CT_BODY_HU if is_ct(name) else data[c] != 0
    if seg is not None:
        mask |= seg > 0
    if not mask.any():
        return [[0, n] for n in mask.shape]
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        box.append([int(hit[0]), int(hit[-1]) + 1])
    return box


def crop(array: np.ndarray, box: list[list[int]]) -> np.ndarray:
    sl = tuple(slice(a, b) for a, b in box)
    return array[(Ellipsis,) + sl]


def resize(array: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """Resample the last 3 axes to `shape`, voxel centres aligned (as skimage resize does)."""
    shape = tuple(int(s) for s in shape)
    if tuple(array.shape[-3:]) == shape:
        return array.copy()
    if array.ndim > 3:
        return np.stack([resize(a, shape, order) for a in array])
    scale = np.array(array.shape, float) / np.array(shape, float)
    src = array if order == 0 or array.dtype == np.float32 else array.astype(np.float32)
    return ndimage.affine_transform(src, scale, offset=0.5 * scale - 0.5, output_shape=shape,
                                    order=order, mode="nearest", prefilter=order > 1)


def target_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> list[int]:
    return new_shape(shape, spacing, target)


def case_target_spacing(plan: Plan, spacing_zyx: Sequence[float]) -> list[float]:
    """The plan's spacing; 2d plans keep each case's own slice spacing (z is never resampled)."""
    target = [float(s) for s in plan.spacing]
    if plan.dim == 2:
        target[0] = float(spacing_zyx[0])
    return target


def normalize(data: np.ndarray, plan: Plan) -> np.ndarray:
    """Per-channel normalization of the plan (in place on a float32 copy)."""
    out = np.empty(data.shape, np.float32)
    for c, norm in enumerate(plan.normalization):
        x = data[c].astype(np.float32)
        if norm.scheme == "ct":
            lo, hi = norm.clip
            x = np.clip(x, lo, hi)
            out[c] = (x - norm.mean) / max(norm.std, 1e-8)
        else:
            out[c] = (x - x.mean()) / max(float(x.std()), 1e-8)
    return out


def class_locations(seg: np.ndarray, labels: Sequence[int], seed: int,
                    max_per_class: int = 1000) -> dict[str, list[list[int]]]:
    """Up to `max_per_class` sampled (z, y, x) voxels of each foreground class."""
    rng = np.random.default_rng(seed)
    out = {}
    for label in labels:
        idx = np.argwhere(seg == label)
        if len(idx) > max_per_class:
            idx = idx[np.sort(rng.choice(len(idx), max_per_class, replace=False))]
        out[str(label)] = idx.tolist()
    return out


def load_images(image_paths: Sequence[str | Path],
                num_channels: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(C, I, J, K) float32 stack of the channel files (or of one 4D MSD file) and the affine."""
    if len(image_paths) == 1:
        data, affine, _ = load_nifti(image_paths[0], channels=True)
        stack = np.moveaxis(data, 3, 0) if data.ndim == 4 else data[None]
        if num_channels is not None and stack.shape[0] != num_channels:
            raise DatasetError(f"{image_paths[0]}: {stack.shape[0]} channel(s) in the file, "
                               f"{num_channels} declared")
        return np.ascontiguousarray(stack), affine
    arrays, affine = [], None
    for p in image_paths:
        data, aff, _ = load_nifti(p)
        if affine is None:
            affine = aff
        elif data.shape != arrays[0].shape:
            raise DatasetError(f"{p}: shape {data.shape} differs from channel 0's {arrays[0].shape}")
        arrays.append(data)
    if num_channels is not None and len(arrays) != num_channels:
        raise DatasetError(f"{image_paths[0]}: {len(arrays)} channel file(s), {num_channels} declared")
    return np.stack(arrays), affine


def preprocess_arrays(images: np.ndarray, affine: np.ndarray, plan: Plan,
                      seg: np.ndarray | None = None):
    """(data (C,Z,Y,X) float32, seg (Z,Y,X) uint8/int16 or None, props) from file-order arrays."""
    transform = orientation_transform(affine)
    canon = to_canonical(images, transform)
    canon_seg = to_canonical(seg, transform) if seg is not None else None
    spacing = canonical_spacing(affine, transform)
    box = body_box(canon, plan.channel_names, canon_seg)
    cropped = crop(canon, box)
    target = case_target_spacing(plan, spacing)
    shape = target_shape(cropped.shape[1:], spacing, target)
    data = resample_image(normalize(cropped, plan), shape, spacing, target)
    out_seg = None
    if canon_seg is not None:
        dtype = seg_dtype(max(plan.labels.values()))
        out_seg = resample_labels(crop(canon_seg, box).astype(dtype), shape, spacing, target)
    props = {
        "spacing": target,
        "shape": list(shape),
        "original": {
            "affine": np.asarray(affine).tolist(),
            "shape": list(images.shape[1:]),
            "orientation_transform": np.asarray(transform).tolist(),
            "spacing_zyx": spacing,
        },
        "canonical_shape": list(canon.shape[1:]),
        "crop_box": box,
        "cropped_shape": list(cropped.shape[1:]),
    }
    return data, out_seg, props


def preprocess_image(image_paths: Sequence[str | Path], plan: Plan):
    """(data (C,Z,Y,X) float32, props) of one unlabeled case, as preprocessing does it."""
    if not image_paths:
        raise DatasetError("preprocess_image: no image files given")
    images, affine = load_images(image_paths, len(plan.channel_names))
    data, _, props = preprocess_arrays(images, affine, plan)
    props["image_files"] = [str(Path(p).resolve()) for p in image_paths]
    return data, props


def _uncrop(array: np.ndarray, props: dict, fill: Sequence[float]) -> np.ndarray:
    """(K, *cropped) -> (K, *canonical) with `fill[k]` outside the crop box."""
    full = np.empty((array.shape[0], *props["canonical_shape"]), array.dtype)
    for k in range(array.shape[0]):
        full[k] = fill[k]
    sl = tuple(slice(a, b) for a, b in props["crop_box"])
    full[(slice(None),) + sl] = array
    return full


def to_original(probs: np.ndarray, props: dict, regions: bool = False) -> np.ndarray:
    """(K, Z, Y, X) probabilities -> (K, I, J, K') on the original grid (order 1, nnU-Net's rules)."""
    probs = np.asarray(probs, dtype=np.float32)
    back = resample_probabilities(probs, props["cropped_shape"], props["spacing"],
                                  props["original"]["spacing_zyx"])
    # outside the body: background (for regions: no region)
    fill = [0.0 if regions else 1.0] + [0.0] * (probs.shape[0] - 1)
    full = _uncrop(back, props, fill)
    return from_canonical(full, np.asarray(props["original"]["orientation_transform"]))


def labels_to_original(seg: np.ndarray, props: dict) -> np.ndarray:
    """(Z, Y, X) labels -> (I, J, K) on the original grid (order 1 per label, nnU-Net's rules)."""
    seg = np.asarray(seg)
    back = resample_labels(seg.astype(np.int16), props["cropped_shape"], props["spacing"],
                           props["original"]["spacing_zyx"])
    full = _uncrop(back[None], props, [0])[0]
    return from_canonical(full, np.asarray(props["original"]["orientation_transform"]))


def save_nifti(array: np.ndarray, props: dict, path: str | Path) -> None:
    """Write a label map (original voxel grid) with the original affine."""
    import nibabel as nib
    array = np.asarray(array)
    want = tuple(props["original"]["shape"])
    if array.shape != want:
        raise ValueError(f"save_nifti: array shape {array.shape} is not the original {want}")
    dtype = np.uint8 if array.min(initial=0) >= 0 and array.max(initial=0) < 256 else np.int16
    affine = np.asarray(props["original"]["affine"], dtype=np.float64)
    img = nib.Nifti1Image(array.astype(dtype), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
