"""nnU-Net's augmentations of the cascade's one-hot previous-stage channels.

So that stage 2 does not simply copy stage 1, nnU-Net (nnUNetTrainer, batchgeneratorsv2)
perturbs the one-hot channels after the spatial and intensity transforms:
- with probability 0.4, each label channel (random order, each with p 0.5) gets a random
  binary dilation, erosion, opening or closing with a ball of radius U(1, 8); voxels it adds
  are removed from the other channels (ApplyRandomBinaryOperatorTransform);
- with probability 0.2, each label channel (p 0.5) loses one random connected component
  smaller than 15 % of the patch (RemoveRandomConnectedComponentFromOneHotEncodingTransform,
  fill_with_other_class_p 0).
Drawn from the sample's own generator, so resume stays bit-exact.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BINARY_OP_P, BINARY_OP_P_PER_LABEL, STREL_RADIUS = 0.4, 0.5, (1.0, 8.0)
REMOVE_CC_P, REMOVE_CC_P_PER_LABEL, REMOVE_CC_MAX_FRACTION = 0.2, 0.5, 0.15


def _window(x: np.ndarray, radius: float) -> tuple[slice, ...]:
    """The bounding box of x's True voxels grown by the radius, within the patch."""
    grow = int(np.ceil(radius))
    box = []
    for axis in range(x.ndim):
        hit = np.flatnonzero(x.any(axis=tuple(a for a in range(x.ndim) if a != axis)))
        box.append(slice(max(0, hit[0] - grow), min(x.shape[axis], hit[-1] + grow + 1)))
    return tuple(box)


def _squared_distance(mask: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of every voxel to the nearest False voxel, as integers."""
    d = ndimage.distance_transform_edt(mask)
    return np.rint(d * d)


# Ball morphology by one exact Euclidean distance transform instead of a structuring element
# of up to 17^3 voxels, computed only in the bounding box that can change: the same sets as
# scipy's binary_dilation / binary_erosion(border_value=1) with the ball |g|^2 <= radius^2
# (tests/test_augment.py checks it), at a small fraction of the CPU.
def _dilate(x, radius):
    out = np.zeros_like(x)
    if x.any():
        box = _window(x, radius)
        out[box] = _squared_distance(~x[box]) <= radius * radius
    return out


def _erode(x, radius):
    # nnU-Net erodes as the complement of a dilation: outside the patch counts as foreground
    out = np.zeros_like(x)
    if x.any():
        box = _window(x, radius)
        inner = x[box]
        out[box] = inner if inner.all() else _squared_distance(inner) > radius * radius
    return out


def _open(x, radius):
    return _dilate(_erode(x, radius), radius)


def _close(x, radius):
    return _erode(_dilate(x, radius), radius)


OPERATORS = (_dilate, _erode, _close, _open)


def random_binary_operator(onehot: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    channels = list(rng.permutation(len(onehot)))
    chosen = [c for c, hit in zip(channels, rng.random(len(channels)) < BINARY_OP_P_PER_LABEL)
              if hit]
    for c in chosen:
        op = OPERATORS[int(rng.integers(len(OPERATORS)))]
        radius = float(rng.uniform(*STREL_RADIUS))
        before = onehot[c] > 0
        after = op(before, radius)
        added = after & ~before
        for other in range(len(onehot)):
            if other != c:
                onehot[other][added] = 0
        onehot[c] = after
    return onehot


def remove_random_component(onehot: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    channels = list(rng.permutation(len(onehot)))
    chosen = [c for c, hit in zip(channels, rng.random(len(channels)) < REMOVE_CC_P_PER_LABEL)
              if hit]
    limit = onehot[0].size * REMOVE_CC_MAX_FRACTION
    for c in chosen:
        mask = onehot[c] > 0
        if not mask.any():
            continue
        labels, n = ndimage.label(mask)
        sizes = np.bincount(labels.ravel())[1:]
        small = [i + 1 for i, s in enumerate(sizes) if s < limit]
        if small:
            onehot[c][labels == small[int(rng.integers(len(small)))]] = 0
    return onehot


def augment_previous_stage(onehot: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Both perturbations with nnU-Net's probabilities, on a (F, *patch) float one-hot array."""
    onehot = onehot.copy()
    if rng.random() < BINARY_OP_P:
        onehot = random_binary_operator(onehot, rng)
    if rng.random() < REMOVE_CC_P:
        onehot = remove_random_component(onehot, rng)
    return onehot
