"""Spatial and intensity augmentation of one patch (numpy), nnU-Net's kinds and probabilities."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import affine_transform


def _rotate_scale(img: np.ndarray, seg: np.ndarray, rng: np.random.Generator,
                  rotate: bool, scale: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rotate in the last two axes (in-plane, as for anisotropic CT) and/or zoom, about the centre."""
    dim = seg.ndim
    matrix = np.eye(dim)
    if rotate:
        limit = np.pi if dim == 2 else np.pi / 6
        a = rng.uniform(-limit, limit)
        c, s = np.cos(a), np.sin(a)
        matrix[-2:, -2:] = [[c, -s], [s, c]]
    if scale:
        matrix = matrix / rng.uniform(0.7, 1.4)  # output->input map: divide to zoom in by the factor
    centre = (np.asarray(seg.shape) - 1) / 2
    offset = centre - matrix @ centre
    img = np.stack([affine_transform(ch, matrix, offset, order=1, mode="nearest") for ch in img])
    seg = affine_transform(seg, matrix, offset, order=0, mode="nearest")
    return img.astype(np.float32, copy=False), seg


def _gamma(ch: np.ndarray, rng: np.random.Generator, invert: bool) -> np.ndarray:
    """nnU-Net's gamma on the [min, max] range, keeping mean and std."""
    if invert:
        ch = -ch
    mean, std = ch.mean(), ch.std()
    lo, rng_ = ch.min(), np.ptp(ch)
    g = rng.uniform(0.7, 1.0) if rng.random() < 0.5 else rng.uniform(1.0, 1.5)
    ch = np.power((ch - lo) / (rng_ + 1e-7), g) * (rng_ + 1e-7) + lo
    ch = (ch - ch.mean()) / (ch.std() + 1e-8) * std + mean
    return -ch if invert else ch


def augment(img: np.ndarray, seg: np.ndarray, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """Random rotation/scale, noise, brightness, gamma and mirroring of a (C, *patch) patch."""
    rotate, scale = rng.random() < 0.2, rng.random() < 0.2
    if rotate or scale:
        img, seg = _rotate_scale(img, seg, rng, rotate, scale)
    img = img.copy()
    if rng.random() < 0.1:
        img += rng.normal(0.0, np.sqrt(rng.uniform(0, 0.1)), img.shape).astype(np.float32)
    if rng.random() < 0.15:
        img *= np.float32(rng.uniform(0.75, 1.25))
    if rng.random() < 0.1:
        img = np.stack([_gamma(ch, rng, invert=True) for ch in img]).astype(np.float32)
    if rng.random() < 0.3:
        img = np.stack([_gamma(ch, rng, invert=False) for ch in img]).astype(np.float32)
    for axis in range(seg.ndim):
        if rng.random() < 0.5:
            img, seg = np.flip(img, axis + 1), np.flip(seg, axis)
    return np.ascontiguousarray(img), np.ascontiguousarray(seg)
