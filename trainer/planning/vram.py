"""nnU-Net's network presets and its static GPU-memory estimate (feature-map voxel counts).

nnU-Net does not measure memory while planning: it counts the elements of every convolution
output of the network for one patch (dynamic_network_architectures'
`compute_conv_feature_map_size`) and compares the count with a reference value that is known
to fit a batch of `ref_batch` patches in `ref_gb` GB. The reference values and block counts
below are those of nnunetv2 2.x (ExperimentPlanner, nnUNetPlannerResEncM/L/XL).
The counts here are computed from the topology alone (no torch), and
tests/test_planning_family.py checks them against dynamic_network_architectures itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Preset:
    name: str
    network: str                         # "unet" (plain) or "resenc" (residual encoder)
    encoder_blocks: tuple[int, ...]      # convs (plain) or residual blocks (resenc) per stage
    decoder_convs: tuple[int, ...]       # convs per decoder stage
    ref_3d: float                        # feature-map elements that fit `ref_gb`
    ref_2d: float
    ref_gb: float                        # the reference's GPU memory (also the default target)
    max_dataset_covered: float           # batch cap: fraction of the dataset's voxels per step
    # The plain planner shrinks the patch until a batch of MIN_BATCH fits (estimate / ref_batch
    # * 2 > reference); the ResEnc planners until one patch's estimate fits (estimate > reference).
    shrink_for_min_batch: bool = False
    ref_batch_3d: int = 2
    ref_batch_2d: int = 12


_RESENC_ENC = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6)
PRESETS: dict[str, Preset] = {
    # ExperimentPlanner: "arbitrary, set to reproduce nnU-Net v1's configurations"
    "unet": Preset("unet", "unet", (2,) * 14, (2,) * 13, 560e6, 85e6, 8, 0.05, True),
    # nnUNetPlannerResEncM/L/XL: targets ~8, 24 and 40 GB; no 5 % batch cap (covered = 1)
    "resenc_m": Preset("resenc_m", "resenc", _RESENC_ENC, (1,) * 12, 680e6, 135e6, 8, 1.0),
    "resenc_l": Preset("resenc_l", "resenc", _RESENC_ENC, (1,) * 12, 2100e6, 380e6, 24, 1.0),
    "resenc_xl": Preset("resenc_xl", "resenc", _RESENC_ENC, (1,) * 12, 3600e6, 560e6, 40, 1.0),
}
MIN_BATCH = 2                            # nnU-Net's UNet_min_batch_size


def _elements(channels: int, size) -> int:
    return int(np.prod([channels, *size], dtype=np.int64))


def _down(size, stride):
    return [s // t for s, t in zip(size, stride)]


def feature_map_elements(network: str, patch: list[int], strides: list[list[int]],
                         features: list[int], encoder_blocks, decoder_convs, in_channels: int,
                         num_classes: int, deep_supervision: bool = False) -> int:
    """Elements of all conv outputs for one patch, as dynamic_network_architectures counts them.

    nnU-Net builds the network for its estimate without deep supervision (the class default),
    so only the full-resolution segmentation head is counted unless asked otherwise.
    """
    size, total, skips = list(patch), 0, []
    prev = features[0] if network == "resenc" else in_channels
    if network == "resenc":
        total += _elements(features[0], size)            # the stem: one conv at full size
    for s, (stride, feat) in enumerate(zip(strides, features)):
        after = _down(size, stride)
        n = encoder_blocks[s]
        if network == "resenc":
            # BasicBlockD: two convs, plus a 1x1 projection where shape or channels change
            proj = prev != feat or after != size
            total += 2 * _elements(feat, after) + (_elements(feat, after) if proj else 0)
            total += (n - 1) * 2 * _elements(feat, after)
        else:
            total += n * _elements(feat, after)
        size, prev = after, feat
        skips.append(after)
    # decoder: for each level above the bottleneck, its convs, the transposed conv, a seg head
    levels = len(strides) - 1
    for s in range(levels):
        at = skips[levels - 1 - s]
        feat = features[levels - 1 - s]
        total += decoder_convs[s] * _elements(feat, at) + _elements(feat, at)
        if deep_supervision or s == levels - 1:
            total += _elements(num_classes, at)
    return int(total)


def too_large(preset: Preset, estimate: float, ref: float, ref_batch: int) -> bool:
    """nnU-Net's shrink condition for the preset (see Preset.shrink_for_min_batch)."""
    if preset.shrink_for_min_batch:
        return estimate / ref_batch * MIN_BATCH > ref
    return estimate > ref


def reference(preset: Preset, dim: int, target_gb: float) -> tuple[float, int]:
    """(feature-map budget for the target, the reference batch size), nnU-Net's scaling."""
    ref = (preset.ref_2d if dim == 2 else preset.ref_3d) * target_gb / preset.ref_gb
    return ref, preset.ref_batch_2d if dim == 2 else preset.ref_batch_3d
