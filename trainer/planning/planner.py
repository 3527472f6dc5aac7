"""Plans per configuration from the fingerprint, following nnU-Net's rules.

Target spacing: the median spacing; with strongly anisotropic data (max/min > 3, and the
coarse axis' extent in voxels too small) the coarse axis takes the 10th percentile instead.
2d: in-plane spacing, z untouched. 3d_lowres and the cascade: trainer.planning.family.
Patch size: a spacing-shaped patch capped at the median resampled shape, shrunk along the
axis largest relative to the median until nnU-Net's memory estimate fits the VRAM target
(trainer.planning.vram; or, with `voxel_budget`, until the patch has that many voxels),
padded to be divisible by 2^pools. Topology: nnU-Net's get_pool_and_conv_props.
"""

from __future__ import annotations

import math

import numpy as np

from contracts.errors import ConfigError
from contracts.experiment import Configuration

from trainer.data.geometry import is_ct
from trainer.planning.plans import ChannelNorm, Plan
from trainer.planning.vram import MIN_BATCH, PRESETS, feature_map_elements, reference, too_large

MIN_FEATURE_MAP = 4            # nnU-Net: smallest edge in the bottleneck
ANISOTROPY = 3.0


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
    # nnU-Net's determine_fullres_target_spacing: the median shape BEFORE resampling decides
    # whether the coarse axis also has few voxels
    median_size = np.median(shapes, 0)
    aniso_spacing = median[worst] > ANISOTROPY * max(median[others])
    aniso_voxels = median_size[worst] * ANISOTROPY < min(median_size[others])
    if aniso_spacing and aniso_voxels:
        t = float(np.percentile(spacings[:, worst], 10))
        if t < max(median[others]):
            t = max(max(median[others]), t) + 1e-5
        target[worst] = t
        notes["anisotropic_axis"] = worst
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


def _shrink_once(spacing, patch: list, median, divisor) -> list:
    """nnU-Net's patch reduction step along the axis largest relative to the median shape.

    Subtracting the current divisor could skip valid sizes (256 - 64 skips 224), so nnU-Net
    first recomputes the divisor of the reduced patch and subtracts that one instead.
    """
    axis = int(np.argsort([p / m for p, m in zip(patch, median)], kind="stable")[-1])
    tmp = list(patch)
    tmp[axis] -= divisor[axis]
    *_, div_after = pool_and_conv_props(spacing, tmp)
    out = list(patch)
    out[axis] -= div_after[axis]
    return out


def _estimate(preset, patch, strides, filters, in_channels, num_classes) -> int:
    n = len(strides)
    return feature_map_elements(preset.network, patch, strides, filters,
                                preset.encoder_blocks[:n], preset.decoder_convs[:n - 1],
                                in_channels, num_classes)


def _filters(cfg: Configuration, levels: int) -> list[int]:
    return [min(cfg.base_features * 2 ** i, cfg.max_features) for i in range(levels)]


def vram_topology(spacing: list[float], median_shape: list[float], cfg: Configuration,
                  in_channels: int, num_classes: int, dataset_voxels: float) -> dict:
    """Patch, topology and batch size of one configuration, nnU-Net's get_plans_for_configuration.

    The patch starts spacing-shaped at 256^3 (2048^2) voxels, capped at the median shape, and
    shrinks until the feature-map estimate fits the preset's reference scaled to the VRAM
    target; the batch then fills the remaining headroom, capped so one step sees at most the
    preset's fraction of the dataset's voxels, and never below 2.
    """
    preset = PRESETS[cfg.preset]
    dim = len(spacing)
    target_gb = cfg.vram_target_gb or preset.ref_gb
    ref, ref_batch = reference(preset, dim, target_gb)
    fixed = cfg.patch_size != "auto" or cfg.voxel_budget is not None
    if cfg.patch_size != "auto":
        pools, strides, kernels, patch, divisor = pool_and_conv_props(spacing, list(cfg.patch_size))
    elif cfg.voxel_budget is not None:
        patch, strides, kernels, pools = auto_patch(median_shape, spacing, cfg.voxel_budget)
    else:
        inv = 1.0 / np.asarray(spacing, float)
        side = 256 if dim == 3 else 2048
        initial = [round(i) for i in inv * (side ** dim / np.prod(inv)) ** (1 / dim)]
        initial = [min(i, m) for i, m in zip(initial, median_shape)]
        pools, strides, kernels, patch, divisor = pool_and_conv_props(spacing, initial)
    estimate = _estimate(preset, patch, strides, _filters(cfg, len(strides)), in_channels,
                         num_classes)
    while not fixed and too_large(preset, estimate, ref, ref_batch) \
            and max(patch) > 2 * MIN_FEATURE_MAP:
        patch = _shrink_once(spacing, patch, median_shape, divisor)
        pools, strides, kernels, patch, divisor = pool_and_conv_props(spacing, patch)
        estimate = _estimate(preset, patch, strides, _filters(cfg, len(strides)), in_channels,
                             num_classes)
    batch = round(ref / estimate * ref_batch)
    cap = round(dataset_voxels * preset.max_dataset_covered / float(np.prod(patch, dtype=np.float64)))
    batch = max(min(batch, cap), MIN_BATCH)
    return {"patch": [int(p) for p in patch], "strides": strides, "kernels": kernels,
            "pools": pools, "batch": int(batch),
            "vram": {"preset": preset.name, "target_gb": target_gb, "estimate": int(estimate),
                     "reference": float(ref), "reference_batch": ref_batch, "auto_batch": int(batch),
                     "fits": not too_large(preset, estimate, ref, ref_batch)}}


def plan_configuration(configuration: str, cfg: Configuration, fp: dict,
                       file_ending: str = ".nii.gz", *, spacing: list[float] | None = None,
                       median_shape: list[float] | None = None,
                       notes: dict | None = None) -> Plan:
    """The plan of one configuration; `spacing`/`median_shape` given: 3d_lowres' loop step."""
    dim = 2 if configuration == "2d" else 3
    if spacing is None:
        spacing, notes = target_spacing(fp, configuration, cfg)
    notes = dict(notes or {})
    spacings = np.asarray(fp["spacings"], float)
    shapes = np.asarray(fp["shapes_after_crop"], float)
    resampled = np.rint(spacings / np.asarray(spacing) * shapes)  # compute_new_shape, same float order
    # nnU-Net's approximate_n_voxels_dataset: the median resampled volume times the cases
    dataset_voxels = float(np.prod(np.median(resampled, 0) if median_shape is None
                                   else median_shape, dtype=np.float64)) * len(fp["spacings"])
    if median_shape is None:
        if dim == 2:
            resampled[:, 0] = shapes[:, 0]           # 2d keeps the slices as they are
        median_shape = np.median(resampled, 0).tolist()
    net_spacing = spacing[-dim:]
    num_classes = len(fp.get("regions") or fp["labels"])   # network outputs
    topo = vram_topology(net_spacing, list(median_shape)[-dim:], cfg, len(fp["channel_names"]),
                         num_classes, dataset_voxels)
    patch, strides, kernels, pools = topo["patch"], topo["strides"], topo["kernels"], topo["pools"]
    if cfg.patch_size != "auto":
        notes["patch_source"] = "experiment file"
        if patch != list(cfg.patch_size):
            notes["patch_padded_from"] = list(cfg.patch_size)
    elif cfg.voxel_budget is not None:
        notes["patch_source"] = f"auto (median shape within {cfg.voxel_budget} voxels)"
    else:
        notes["patch_source"] = f"auto (nnU-Net memory estimate within {topo['vram']['target_gb']} GB)"
    if len(strides) < 2:
        raise ConfigError(f"configurations.{configuration}.patch_size: {patch} is too small to "
                          f"downsample even once (each axis needs >= {2 * MIN_FEATURE_MAP} voxels)")
    preset = PRESETS[cfg.preset]
    n = len(strides)
    notes.update(num_pool_per_axis=pools, vram=topo["vram"])
    if cfg.voxel_budget is not None:
        notes["voxel_budget"] = cfg.voxel_budget
    return Plan(
        configuration=configuration, dim=dim, spacing=[float(s) for s in spacing],
        patch_size=patch,
        batch_size=topo["batch"] if cfg.batch_size == "auto" else cfg.batch_size,
        median_shape=[int(round(s)) for s in median_shape],
        kernel_sizes=kernels, strides=strides, filters=_filters(cfg, n),
        normalization=normalization(fp), labels=dict(fp["labels"]),
        channel_names=list(fp["channel_names"]), file_ending=file_ending, extra=notes,
        network=preset.network,
        encoder_blocks=list(preset.encoder_blocks[:n]) if preset.network != "unet" else None,
        decoder_convs=list(preset.decoder_convs[:n - 1]) if preset.network != "unet" else None,
        regions=dict(fp.get("regions") or {}),
        regions_class_order=list(fp.get("regions_class_order") or []))
