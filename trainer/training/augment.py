"""nnU-Net's training augmentation of one patch (numpy), its kinds, ranges and probabilities.

As nnUNetTrainer.get_training_transforms (v2.8), in this order, each drawn from the
sample's own generator:
  spatial         p 0.2 rotation, p 0.2 scaling (0.7-1.4, one factor for all axes);
                  3d: about all three axes, +-30 deg; strongly anisotropic 3d patches
                  (max/first > 3, "dummy 2d") and 2d: in-plane only, +-180 deg (2d patches
                  with an aspect ratio > 1.5: +-15 deg). Images linear, labels linear per
                  label + argmax; the region is cut from the volume large enough that the
                  rotated patch never reaches padding it does not need.
  Gaussian noise  p 0.1, std U(0, 0.1), same for all channels
  Gaussian blur   p 0.2, per channel p 0.5, sigma U(0.5, 1) drawn per axis
  brightness      p 0.15, per channel a multiplier from (0.75, 1.25)
  contrast        p 0.15, per channel a factor from (0.75, 1.25) about the mean, range kept
  low resolution  p 0.25, per channel p 0.5, zoom U(0.5, 1) (not along z for dummy 2d):
                  nearest down, linear up
  gamma           p 0.1 inverted, then p 0.3 plain; gamma from (0.7, 1.5), stats kept
  mirroring       each spatial axis p 0.5
"(a, b)" factors are drawn as nnU-Net's BGContrast: half the time below 1, half above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

ANISO_THRESHOLD = 3.0


@dataclass(frozen=True)
class AugmentPlan:
    """What nnU-Net derives from the patch size (configure_rotation_dummyDA_mirroring...)."""

    dim: int
    max_angle: float             # radians; angles are U(-max_angle, max_angle)
    dummy_2d: bool               # 3d patch of thick slices: in-plane spatial/low-res only

    @classmethod
    def for_patch(cls, patch_size) -> "AugmentPlan":
        patch = [int(p) for p in patch_size]
        if len(patch) == 2:
            wide = max(patch) / min(patch) > 1.5
            return cls(2, np.deg2rad(15.0 if wide else 180.0), False)
        dummy = max(patch) / patch[0] > ANISO_THRESHOLD
        return cls(3, np.deg2rad(180.0 if dummy else 30.0), dummy)


def bg_factor(rng: np.random.Generator, lo: float, hi: float) -> float:
    """nnU-Net's BGContrast: U(lo, 1) half the time (when lo < 1), else U(max(lo, 1), hi)."""
    if rng.random() < 0.5 and lo < 1:
        return float(rng.uniform(lo, 1))
    return float(rng.uniform(max(lo, 1), hi))


def _rotation(axis: int, angle: float) -> np.ndarray:
    """Rotation in the plane of the two axes other than `axis` (3d)."""
    a, b = [i for i in range(3) if i != axis]
    m = np.eye(3)
    c, s = np.cos(angle), np.sin(angle)
    m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
    return m


def spatial_matrix(rng: np.random.Generator, aug: AugmentPlan) -> np.ndarray | None:
    """Output->input voxel map of the patch (rotation @ scaling), or None when not drawn."""
    rotate, scale = rng.random() < 0.2, rng.random() < 0.2
    if not (rotate or scale):
        return None
    spatial = 2 if (aug.dim == 2 or aug.dummy_2d) else 3
    angles = [rng.uniform(-aug.max_angle, aug.max_angle) for _ in range(spatial)] if rotate \
        else [0.0] * spatial
    factor = rng.uniform(0.7, 1.4) if scale else 1.0
    if spatial == 2:
        c, s = np.cos(angles[-1]), np.sin(angles[-1])
        m2 = np.array([[c, -s], [s, c]]) * factor
        if aug.dim == 2:
            return m2
        m = np.eye(3)
        m[1:, 1:] = m2                  # dummy 2d: z untouched
        return m
    # nnU-Net's order: Rz @ Ry @ Rx @ S (rotations about the array axes 2, 1, 0)
    return _rotation(2, angles[2]) @ _rotation(1, angles[1]) @ _rotation(0, angles[0]) * factor


def region_extent(matrix: np.ndarray | None, patch_size) -> list[int]:
    """Size of the input region the transformed patch samples from (+ 1 voxel for interpolation)."""
    patch = np.asarray(patch_size, dtype=float)
    if matrix is None:
        return [int(p) for p in patch]
    reach = np.abs(matrix) @ (patch - 1)
    return [int(max(p, np.ceil(r) + 3)) for r, p in zip(reach, patch)]


LABEL_CHUNK = 16    # label indicators warped together: bounds memory for wide label sets


def _sampling_grid(matrix: np.ndarray, offset: np.ndarray, region, shape) -> torch.Tensor:
    """grid_sample's grid (1, *shape, dim) for input voxel coordinates matrix @ out + offset.

    With align_corners=True a voxel coordinate c on an axis of n voxels is u = 2 c / (n - 1) - 1
    in grid units, so the voxel map becomes the affine map u_in = A u_out + b that affine_grid
    expands; grid_sample's axes are the array axes reversed (x, y, z).
    """
    half_in = np.array([max(n - 1, 1) for n in region], float) / 2
    half_out = np.array([max(n - 1, 1) for n in shape], float) / 2
    a = matrix * half_out[None, :] / half_in[:, None]
    b = (matrix @ half_out + offset) / half_in - 1
    theta = np.concatenate([a[::-1, ::-1], b[::-1, None]], axis=1)
    return F.affine_grid(torch.from_numpy(theta[None].astype(np.float32)),
                         [1, 1, *shape], align_corners=True)


def _resample(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """(C, *region) float32 -> (C, *shape): linear, edge values beyond the border."""
    return F.grid_sample(x[None], grid, mode="bilinear", padding_mode="border",
                         align_corners=True)[0]


def _present(seg: np.ndarray) -> np.ndarray:
    """The sorted label values in a label map (a count per value: cheaper than np.unique)."""
    if seg.dtype.kind in "ui" and seg.size and seg.min() >= 0:
        return np.flatnonzero(np.bincount(seg.ravel())).astype(seg.dtype)
    return np.unique(seg)


def _warp_labels(seg: np.ndarray, grid: torch.Tensor, shape) -> np.ndarray:
    """One label map through the grid as nnU-Net does: each label's indicator linearly, then
    the argmax (lowest label wins ties); LABEL_CHUNK indicators per grid_sample.

    The lowest label is not sampled: linear interpolation keeps the indicators summing to
    one, so its score is 1 minus the others' (one grid_sample channel fewer per label map).
    """
    labels = _present(seg)
    if len(labels) == 1:
        return np.full(shape, labels[0], dtype=seg.dtype)
    s = torch.from_numpy(np.ascontiguousarray(seg))
    buf = torch.empty((min(LABEL_CHUNK, len(labels) - 1), *seg.shape), dtype=torch.float32)
    best = win = total = None
    for start in range(1, len(labels), LABEL_CHUNK):
        chunk = labels[start:start + LABEL_CHUNK]
        for i, value in enumerate(chunk):
            torch.eq(s, int(value), out=buf[i])          # 0. / 1. straight into the buffer
        scores = _resample(buf[:len(chunk)], grid)
        score, idx = scores.max(dim=0)                   # first maximum: the lowest label
        if best is None:
            best, win, total = score, idx + start, scores.sum(dim=0)
            continue
        total += scores.sum(dim=0)
        better = score > best
        win = torch.where(better, idx + start, win)
        best = torch.maximum(best, score)
    win = torch.where(1 - total >= best, 0, win)         # the lowest label wins its ties
    return labels[win.numpy()].astype(seg.dtype, copy=False)


def warp(img: np.ndarray, seg: np.ndarray, matrix: np.ndarray, patch_size,
         extra: np.ndarray | None = None):
    """The patch sampled from a region (C, *region) through `matrix`, about the centres.

    Images linearly; each label map (`seg`, and `extra`, e.g. the cascade's previous stage)
    on its own, as nnU-Net's SpatialTransform treats every segmentation channel. torch's
    grid_sample with one sampling grid rather than one scipy affine_transform per channel
    and label: less CPU per sample, which on a CPU-only machine comes out of the training
    step. Returns (image, labels) or (image, labels, extra).
    """
    shape = tuple(int(p) for p in patch_size)
    centre_in = (np.asarray(seg.shape, float) - 1) / 2
    centre_out = (np.asarray(shape, float) - 1) / 2
    offset = centre_in - matrix @ centre_out
    grid = _sampling_grid(matrix, offset, seg.shape, shape)
    out = _resample(torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)), grid).numpy()
    if extra is None:
        return out, _warp_labels(seg, grid, shape)
    return out, _warp_labels(seg, grid, shape), _warp_labels(extra, grid, shape)


def center_crop(img: np.ndarray, *maps: np.ndarray, patch_size) -> tuple:
    """The patch in the middle of the region: the image and each label map."""
    start = [(r - p) // 2 for r, p in zip(maps[0].shape, patch_size)]
    sl = tuple(slice(s, s + int(p)) for s, p in zip(start, patch_size))
    return (img[(slice(None),) + sl], *(m[sl] for m in maps))


def _gamma(ch: np.ndarray, gamma: float, invert: bool) -> np.ndarray:
    """nnU-Net's gamma on the [min, max] range, mean and std kept."""
    if invert:
        ch = -ch
    mean, std = ch.mean(), ch.std()
    lo, span = ch.min(), max(float(np.ptp(ch)), 1e-7)
    ch = np.power((ch - lo) / span, gamma) * span + lo
    ch = (ch - ch.mean()) / max(float(ch.std()), 1e-7) * std + mean
    return -ch if invert else ch


def _low_resolution(ch: np.ndarray, zoom: float, keep_z: bool) -> np.ndarray:
    """Nearest-exact down to `zoom` of the size, linear back up (torch's interpolate, as nnU-Net)."""
    shape = ch.shape
    small = [max(1, round(n * zoom)) for n in shape]
    if keep_z and len(shape) == 3:
        small[0] = shape[0]
    x = torch.from_numpy(np.ascontiguousarray(ch, dtype=np.float32))[None, None]
    x = F.interpolate(x, size=small, mode="nearest-exact")
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return F.interpolate(x, size=list(shape), mode=mode, align_corners=False)[0, 0].numpy()


def intensity(img: np.ndarray, rng: np.random.Generator, aug: AugmentPlan) -> np.ndarray:
    """Noise, blur, brightness, contrast, low resolution, gamma (inverted, plain); a new array."""
    img = np.array(img, dtype=np.float32)
    if rng.random() < 0.1:
        std = rng.uniform(0, 0.1)
        img += rng.normal(0.0, std, img.shape).astype(np.float32)
    if rng.random() < 0.2:
        for c in range(len(img)):
            if rng.random() < 0.5:
                sigma = [rng.uniform(0.5, 1.0) for _ in range(img.ndim - 1)]
                img[c] = gaussian_filter(img[c], sigma, mode="nearest", truncate=3.0)
    if rng.random() < 0.15:
        for c in range(len(img)):
            img[c] *= np.float32(bg_factor(rng, 0.75, 1.25))
    if rng.random() < 0.15:
        for c in range(len(img)):
            f = np.float32(bg_factor(rng, 0.75, 1.25))
            x = img[c]
            lo, hi, mean = x.min(), x.max(), x.mean()
            img[c] = np.clip((x - mean) * f + mean, lo, hi)
    if rng.random() < 0.25:
        for c in range(len(img)):
            if rng.random() < 0.5:
                img[c] = _low_resolution(img[c], rng.uniform(0.5, 1.0), aug.dummy_2d)
    for p, invert in ((0.1, True), (0.3, False)):
        if rng.random() < p:
            for c in range(len(img)):
                img[c] = _gamma(img[c], bg_factor(rng, 0.7, 1.5), invert)
    return img


def augment(img: np.ndarray, seg: np.ndarray, rng: np.random.Generator, aug: AugmentPlan,
            matrix: np.ndarray | None, patch_size, extra: np.ndarray | None = None) -> tuple:
    """A (C, *region) region and its labels -> the augmented (C, *patch) patch and labels.

    `matrix` comes from spatial_matrix (drawn before the region was cut, to size it).
    `extra` (the cascade's previous stage) takes the spatial transforms and mirroring of the
    labels and is returned third.
    """
    maps = (seg,) if extra is None else (seg, extra)
    if matrix is not None:
        img, *maps = warp(img, seg, matrix, patch_size, extra)
    else:
        img, *maps = center_crop(img, *maps, patch_size=patch_size)
    img = intensity(img, rng, aug)
    for axis in range(seg.ndim):
        if rng.random() < 0.5:
            img = np.flip(img, axis + 1)
            maps = [np.flip(m, axis) for m in maps]
    return (np.ascontiguousarray(img), *(np.ascontiguousarray(m) for m in maps))
