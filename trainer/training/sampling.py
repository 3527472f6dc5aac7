"""Random training patches with nnU-Net's foreground oversampling."""

from __future__ import annotations

import numpy as np


def foreground_locations(props: dict, labels: list[int]) -> dict[int, np.ndarray]:
    """The sampled foreground voxels of each class present in a case, as (N, 3) int arrays."""
    found = {}
    for key, locs in (props.get("class_locations") or {}).items():
        label = int(key)
        if label in labels and len(locs):
            found[label] = np.asarray(locs, dtype=np.int64).reshape(-1, 3)
    return found


def _crop_pad(array: np.ndarray, start: list[int], size: list[int], fill: float) -> np.ndarray:
    """array[..., start:start+size] over the last len(size) axes, padded with `fill` outside."""
    lead = array.shape[: array.ndim - len(size)]
    out = np.full(lead + tuple(size), fill, dtype=array.dtype)
    src, dst = [slice(None)] * len(lead), [slice(None)] * len(lead)
    for ax, (s, n) in enumerate(zip(start, size)):
        dim = array.shape[len(lead) + ax]
        lo, hi = max(s, 0), min(s + n, dim)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = array[tuple(src)]
    return out


def _start(center: int, patch: int, dim: int, rng: np.random.Generator | None) -> int:
    """Patch start that keeps `center` inside and the patch inside the volume where it fits."""
    if dim <= patch:
        return -((patch - dim) // 2)  # smaller than the patch: centre it, pad both sides
    if center is None:
        return int(rng.integers(0, dim - patch + 1))
    return int(np.clip(center - patch // 2, 0, dim - patch))


def sample_patch(data: np.ndarray, seg: np.ndarray, props: dict, patch_size: list[int],
                 labels: list[int], force_fg: bool, rng: np.random.Generator,
                 extent: list[int] | None = None, extra: np.ndarray | None = None):
    """One (C, *patch) image patch and its (*patch) labels; 2d patches come from one z slice.

    `extent` (>= patch) cuts a larger region centred on the chosen patch (for rotation).
    `extra` (a label-like (Z, Y, X) array, e.g. the cascade's previous stage) is cut with the
    same window and returned third.
    """
    dim = len(patch_size)
    center: list[int | None] = [None, None, None]
    locs = foreground_locations(props, labels) if force_fg else {}
    if locs:
        label = sorted(locs)[int(rng.integers(len(locs)))]
        center = [int(v) for v in locs[label][int(rng.integers(len(locs[label])))]]
    shape = data.shape[1:]
    if dim == 2:
        z = center[0] if center[0] is not None else int(rng.integers(shape[0]))
        data, seg = data[:, z], seg[z]
        extra = None if extra is None else extra[z]
        center, shape = center[1:], shape[1:]
    start = [_start(c, p, d, rng) for c, p, d in zip(center, patch_size, shape)]
    size = list(patch_size)
    if extent is not None:
        start = [s - (e - p) // 2 for s, e, p in zip(start, extent, patch_size)]
        size = list(extent)
    img = _crop_pad(np.asarray(data), start, size, 0.0).astype(np.float32, copy=False)
    lab = _crop_pad(np.asarray(seg), start, size, 0)
    if extra is not None:
        return img, lab, _crop_pad(np.asarray(extra), start, size, 0)
    return img, lab
