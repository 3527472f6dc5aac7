"""Plans per configuration from the fingerprint, following nnU-Net's rules.

Target spacing: the median spacing; with strongly anisotropic data (max/min > 3, and the
coarse axis' extent in voxels too small) the coarse axis takes the 10th percentile instead.
3d_lowres: twice as coarse (capped at the coarsest axis). 2d: in-plane spacing, z untouched.
Patch size: a spacing-shaped patch capped at the median resampled shape, shrunk along the
axis largest relative to the median until it fits the voxel budget, padded to be divisible
by 2^pools. Topology: nnU-Net's get_pool_and_conv_props.
"""

from __future__ import annotations

import math

import numpy as np

from contracts.errors import ConfigError
from contracts.experiment import Configuration

from trainer.data.geometry import is_ct
from trainer.planning.plans import ChannelNorm, Plan

MIN_FEATURE_MAP = 4            # nnU-Net: smallest edge in the bottleneck
ANISOTROPY = 3.0
DEFAULT_BUDGET = {2: 512 * 512, 3: 128 * 128 * 128}


def pool_and_conv_props(spacing: list[float], patch: list[int], min_size: int = MIN_FEATURE_MAP,
                        max_pools: int = 999):
    """(pools per axis, strides per level, kernel sizes per level, padded patch, divisor).

    nnU-Net's rule: pool an axis while it stays >= min_size after pooling and its spacing is
    within a factor 2 of the finest; a lone axis pools only if >= 3*min_size; kernels are 1
    along an axis until its spacing comes within a factor 2 of the finest, then 3.
    """
    dim = len(spacing)
    cur_spacing, cur_size = [float(s) for s in spacing], [float(p) for p in patch]
    strides, kernels = [[1] * dim], []
    pools = [0] * dim
    kernel = [1] * dim
    while True:
        valid = [i for i in range(dim) if cur_size[i] >= 2 * min_size]
        if not valid:
            break
        finest = min(cur_spacing[i] for i in valid)
        valid = [i for i in valid if cur_spacing[i] / finest < 2 and pools[i] < max_pools]
        if len(valid) == 1 and cur_size[valid[0]] < 3 * min_size:
            break
        if not valid:
            break
        for d in range(dim):
            if kernel[d] != 3 and cur_spacing[d] / min(cur_spacing) < 2:
                kernel[d] = 3
        stride = [1] * dim
        for v in valid:
            stride[v] = 2
            pools[v] += 1
            cur_spacing[v] *= 2
            cur_size[v] = math.ceil(cur_size[v] / 2)
        strides.append(stride)
        kernels.append(list(kernel))
    kernels.append([3] * dim)                       # bottleneck
    divisor = [2 ** p for p in pools]
    padded = [int(math.ceil(p / d) * d) for p, d in zip(patch, divisor)]
    return pools, strides, kernels, padded, divisor


def target_spacing(fp: dict, configuration: str, cfg: Configuration) -> tuple[list[float], dict]:
    """(z, y, x) spacing of a configuration and notes on how it was chosen."""
    spacings = np.asarray(fp["spacings"], float)
    shapes = np.asarray(fp["shapes_after_crop"], float)
    median = np.median(spacings, 0)
    notes: dict = {"median_spacing": median.tolist()}
    target = median.copy()
    worst = int(np.argmax(median))
    others = [i for i in range(3) if i != worst]
    median_size = np.median(shapes * spacings / median, 0)
    aniso_spacing = median[worst] > ANISOTROPY * min(median[others])
    aniso_voxels = median_size[worst] * ANISOTROPY < min(median_size[others])
    if aniso_spacing and aniso_voxels:
        t = float(np.percentile(spacings[:, worst], 10))
        target[worst] = max(t, max(median[others]) + 1e-5)
        notes["anisotropic_axis"] = worst
    if configuration == "3d_lowres":
        cap = max(float(target.max()), 2 * float(target.min()))
        target = np.minimum(target * 2, cap)
    if isinstance(cfg.spacing, list):
        given = [float(s) for s in cfg.spacing]
        target = np.asarray([target[0]] + given if configuration == "2d" else given)
        notes["spacing_source"] = "experiment file"
    else:
        notes["spacing_source"] = "auto"
    return [float(s) for s in target], notes


def auto_patch(median_shape: list[float], spacing: list[float], budget: int):
    """nnU-Net's way: a patch shaped by the spacing (same extent in mm per axis), capped at
    the median shape, then shrunk along the axis largest relative to the median shape, one
    divisor step at a time, until it fits the budget after padding."""
    inv = 1.0 / np.asarray(spacing, float)
    side = 256 if len(spacing) == 3 else 2048
    initial = inv * (side ** len(spacing) / np.prod(inv)) ** (1 / len(spacing))
    median = np.maximum(np.asarray(median_shape, float), 1)
    patch = [max(int(round(min(i, m))), 1) for i, m in zip(initial, median)]
    while True:
        pools, strides, kernels, padded, divisor = pool_and_conv_props(spacing, patch)
        if int(np.prod(padded)) <= budget or max(patch) <= 2 * MIN_FEATURE_MAP:
            return padded, strides, kernels, pools
        ratio = [p / m for p, m in zip(patch, median)]
        axis = int(np.argsort(ratio, kind="stable")[-1])
        patch[axis] = max(patch[axis] - max(divisor[axis], 1), 2 * MIN_FEATURE_MAP)


def normalization(fp: dict) -> list[ChannelNorm]:
    out = []
    for c, name in enumerate(fp["channel_names"]):
        stats = fp["foreground_intensity"][str(c)]
        if is_ct(name):
            out.append(ChannelNorm(name, "ct", clip=[stats["percentile_00_5"], stats["percentile_99_5"]],
                                   mean=stats["mean"], std=stats["std"]))
        else:
            out.append(ChannelNorm(name, "zscore"))
    return out


def plan_configuration(configuration: str, cfg: Configuration, fp: dict,
                       file_ending: str = ".nii.gz") -> Plan:
    dim = 2 if configuration == "2d" else 3
    spacing, notes = target_spacing(fp, configuration, cfg)
    spacings = np.asarray(fp["spacings"], float)
    shapes = np.asarray(fp["shapes_after_crop"], float)
    resampled = shapes * spacings / np.asarray(spacing)
    if dim == 2:
        resampled[:, 0] = shapes[:, 0]               # 2d keeps the slices as they are
    median_shape = np.median(resampled, 0)
    net_spacing = spacing[-dim:]
    budget = cfg.voxel_budget or DEFAULT_BUDGET[dim]
    if cfg.patch_size == "auto":
        patch, strides, kernels, pools = auto_patch(median_shape[-dim:].tolist(), net_spacing, budget)
        notes["patch_source"] = f"auto (median shape within {budget} voxels)"
    else:
        given = list(cfg.patch_size)
        pools, strides, kernels, patch, divisor = pool_and_conv_props(net_spacing, given)
        notes["patch_source"] = "experiment file"
        if patch != given:
            notes["patch_padded_from"] = given
            notes["patch_divisor"] = divisor
    if len(strides) < 2:
        raise ConfigError(f"configurations.{configuration}.patch_size: {patch} is too small to "
                          f"downsample even once (each axis needs >= {2 * MIN_FEATURE_MAP} voxels)")
    filters = [min(cfg.base_features * 2 ** i, cfg.max_features) for i in range(len(strides))]
    notes.update(num_pool_per_axis=pools, voxel_budget=budget)
    return Plan(
        configuration=configuration, dim=dim, spacing=spacing, patch_size=[int(p) for p in patch],
        batch_size=cfg.batch_size, median_shape=[int(round(s)) for s in median_shape],
        kernel_sizes=kernels, strides=strides, filters=filters, normalization=normalization(fp),
        labels=dict(fp["labels"]), channel_names=list(fp["channel_names"]),
        file_ending=file_ending, extra=notes, regions=dict(fp.get("regions") or {}),
        regions_class_order=list(fp.get("regions_class_order") or []))
