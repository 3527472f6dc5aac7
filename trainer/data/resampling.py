"""Resampling with nnU-Net v2's rules (default_resampling.py): images, label maps, probabilities.

- The out-of-plane axis of anisotropic data (max/min spacing > ANISO_THRESHOLD, judged on
  the current spacing, else on the target) is resampled on its own: each slice in-plane
  with `order`, then across slices with `order_z` (0: nearest slice). Otherwise all axes
  together. Two equally coarse axes (0.24, 1.25, 1.25) are not treated as anisotropic.
- Images: skimage-style resize (voxel centres aligned, edge padding, clipped to the input's
  range) in float64. Label maps: each label's indicator resized with order 1, the voxel
  takes the label with the highest score; exact ties go to the nearest-neighbour label when
  it is one of the tied ones (batchgenerators' resize_segmentation, seg_tiebreak='nearest').
- Probabilities on export: like images, with order 1.
tests/test_resampling_oracle.py compares every path with nnunetv2's own functions.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

ANISO_THRESHOLD = 3.0          # nnunetv2.configuration.ANISO_THRESHOLD


def new_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> list[int]:
    """nnU-Net's compute_new_shape (same float expression, so ties round the same way)."""
    return [max(1, int(round(s / t * n))) for n, s, t in zip(shape, spacing, target)]


def _lowres_axes(spacing: Sequence[float]) -> np.ndarray:
    spacing = np.asarray(spacing, dtype=float)
    return np.flatnonzero(max(spacing) / spacing == 1)


def separate_axis(current: Sequence[float], target: Sequence[float],
                  threshold: float = ANISO_THRESHOLD) -> int | None:
    """The axis resampled on its own (nnU-Net's determine_do_sep_z_and_axis), or None."""
    axes = None
    for spacing in (current, target):
        s = np.asarray(spacing, dtype=float)
        if s.max() / s.min() > threshold:
            axes = _lowres_axes(s)
            break
    if axes is None or len(axes) != 1:
        return None
    return int(axes[0])


def _zoom(a: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """skimage.transform.resize(a, shape, order, mode='edge', clip=True, anti_aliasing=False)."""
    factors = np.divide(a.shape, tuple(shape))
    out = ndimage.zoom(a, [1 / f for f in factors], order=order, mode="nearest", grid_mode=True)
    if out.shape != tuple(shape):      # cannot happen for sane shapes; say so if it does
        raise ValueError(f"resampling {a.shape} -> {tuple(shape)} gave {out.shape}")
    if order > 0:
        np.clip(out, a.min(), a.max(), out=out)
    return out


def _seg_zoom(seg: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """Label map resize: per-label indicator scores, argmax, nearest-neighbour tie-break."""
    shape = tuple(int(s) for s in shape)
    if order == 0:
        return _zoom(seg.astype(np.float64), shape, 0).astype(seg.dtype)
    labels = np.unique(seg)
    if len(labels) == 1:
        return np.full(shape, labels[0], dtype=seg.dtype)
    nn = _zoom(seg.astype(np.float64), shape, 0)
    nn_idx = np.searchsorted(labels, nn).astype(np.int32)   # the nearest voxel's label, as index
    win = np.zeros(shape, np.int32)
    best = None
    nn_top = None      # where the nearest-neighbour label currently holds the top score
    for i, label in enumerate(labels):
        score = _zoom((seg == label).astype(np.float64), shape, order)
        is_nn = nn_idx == i
        if best is None:
            best, nn_top = score, is_nn & (score > 0)
            continue
        nn_top |= (score == best) & (score > 0) & is_nn     # draws level: may only add
        better = score > best                               # strict: ties stay with the lower label
        nn_top[better] = is_nn[better]
        win[better] = i
        np.maximum(best, score, out=best)
    win[nn_top] = nn_idx[nn_top]
    return labels.astype(seg.dtype)[win]


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index per output index for order-0 resampling along one axis (map_coordinates' rounding)."""
    scale = float(n_in) / n_out
    coords = scale * (np.arange(n_out, dtype=np.float64) + 0.5) - 0.5
    return np.clip(np.floor(coords + 0.5), 0, n_in - 1).astype(np.intp)


def _across_slices(stack: np.ndarray, axis: int, n_out: int, order_z: int) -> np.ndarray:
    """Resample the slices of `stack` along `axis` to n_out (order_z; 0 = nearest slice)."""
    n_in = stack.shape[axis]
    if n_in == n_out:
        return stack
    if order_z == 0:
        return np.take(stack, _nearest_index(n_in, n_out), axis=axis)
    shape = list(stack.shape)
    shape[axis] = n_out
    grid = np.mgrid[tuple(slice(0, n) for n in shape)].astype(np.float64)
    scale = float(n_in) / n_out
    grid[axis] = scale * (grid[axis] + 0.5) - 0.5
    return ndimage.map_coordinates(stack, grid, order=order_z, mode="nearest")


def _resample_volume(vol: np.ndarray, shape: Sequence[int], axis: int | None, order: int,
                     order_z: int, is_seg: bool) -> np.ndarray:
    zoom = _seg_zoom if is_seg else _zoom
    src = vol if is_seg else vol.astype(np.float64, copy=False)
    if axis is None:
        return zoom(src, shape, order)
    inplane = [n for a, n in enumerate(shape) if a != axis]
    slices = [zoom(np.take(src, k, axis=axis), inplane, order) for k in range(vol.shape[axis])]
    stack = np.stack(slices, axis=axis)
    if is_seg and order_z != 0:
        raise NotImplementedError("label maps are resampled across slices with order_z=0 only")
    return _across_slices(stack, axis, int(shape[axis]), order_z)


def resample(array: np.ndarray, shape: Sequence[int], current_spacing: Sequence[float],
              target_spacing: Sequence[float], *, is_seg: bool = False, order: int = 3,
              order_z: int = 0, force_axis: int | None | bool = None) -> np.ndarray:
    """(C, *spatial) -> (C, *shape), nnU-Net's resample_data_or_seg_to_shape; dtype kept.

    force_axis: None decides from the spacings; False never separates; an int forces that axis.
    """
    shape = tuple(int(s) for s in shape)
    if tuple(array.shape[1:]) == shape:
        return array
    if force_axis is None:
        axis = separate_axis(current_spacing, target_spacing)
    else:
        axis = None if force_axis is False else int(force_axis)
    out = np.empty((array.shape[0], *shape), dtype=array.dtype)
    for c in range(array.shape[0]):
        out[c] = _resample_volume(np.asarray(array[c]), shape, axis, order, order_z, is_seg)
    return out


def resample_image(data: np.ndarray, shape, current_spacing, target_spacing) -> np.ndarray:
    """Image channels (C, Z, Y, X): order 3, order 0 across slices when anisotropic."""
    return resample(data, shape, current_spacing, target_spacing, order=3, order_z=0)


def resample_labels(seg: np.ndarray, shape, current_spacing, target_spacing) -> np.ndarray:
    """A label map (Z, Y, X): order 1 per label, order 0 across slices when anisotropic."""
    return resample(seg[None], shape, current_spacing, target_spacing, is_seg=True, order=1)[0]


def resample_probabilities(probs: np.ndarray, shape, current_spacing, target_spacing) -> np.ndarray:
    """Class/region probabilities (K, Z, Y, X) on export: order 1, order 0 across slices."""
    return resample(probs, shape, current_spacing, target_spacing, order=1, order_z=0)
