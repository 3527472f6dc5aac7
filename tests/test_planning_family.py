"""The configuration family on synthetic fingerprints: lowres, cascade, ResEnc presets, VRAM."""

import numpy as np
import pytest

from contracts.errors import ConfigError
from contracts.experiment import Configuration, parse_experiment
from nnunet_planner_oracle import nnunet_plans, synthetic_fingerprint
from trainer.planning.family import plan_family
from trainer.planning.vram import PRESETS, feature_map_elements, reference

AUTO = {"batch_size": "auto"}


def _ours(fp, names, **cfg):
    cfgs = {n: Configuration(**AUTO, **cfg, **({"max_features": 512} if n == "2d" else {}))
            for n in names}
    return plan_family(cfgs, fp)


def _theirs(conf: dict) -> tuple[list[int], int, list[float]]:
    return [int(p) for p in conf["patch_size"]], int(conf["batch_size"]), list(conf["spacing"])


def test_lowres_and_topology_match_nnunet_planner():
    """nnunetv2's ExperimentPlanner itself is the oracle: same spacing, patch and batch."""
    pytest.importorskip("nnunetv2")
    fp = synthetic_fingerprint([100, 160, 160], [1.0, 1.0, 1.0])
    theirs = nnunet_plans(fp, "ExperimentPlanner", gpu_gb=1)
    assert "3d_lowres" in theirs and "3d_cascade_fullres" in theirs
    ours = _ours(fp, ["2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"], vram_target_gb=1)
    for name in ("2d", "3d_fullres", "3d_lowres"):
        patch, batch, spacing = _theirs(theirs[name])
        assert ours[name].patch_size == patch and ours[name].batch_size == batch, name
        assert np.allclose(ours[name].spacing[-len(spacing):], spacing, rtol=1e-9), name
    cascade = ours["3d_cascade_fullres"]
    assert cascade.previous_stage == "3d_lowres" and cascade.in_channels == 1 + 2
    assert cascade.spacing == ours["3d_fullres"].spacing
    assert cascade.patch_size == ours["3d_fullres"].patch_size
    assert ours["3d_lowres"].extra["next_stage"] == "3d_cascade_fullres"


def test_resenc_m_matches_nnunet_planner():
    pytest.importorskip("nnunetv2")
    fp = synthetic_fingerprint([40, 80, 80], [3.0, 0.8, 0.8])
    theirs = nnunet_plans(fp, "resenc_m")
    ours = _ours(fp, ["2d", "3d_fullres"], preset="resenc_m")
    for name in ("2d", "3d_fullres"):
        assert (ours[name].patch_size, ours[name].batch_size) == _theirs(theirs[name])[:2], name
        assert ours[name].network == "resenc" and ours[name].encoder_blocks[:3] == [1, 3, 4]


def test_feature_map_count_matches_dynamic_network_architectures():
    torch = pytest.importorskip("torch")
    unet = pytest.importorskip("dynamic_network_architectures.architectures.unet")
    strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]
    feats = [32, 64, 128, 256]
    for name, cls, key in (("unet", unet.PlainConvUNet, "n_conv_per_stage"),
                           ("resenc_l", unet.ResidualEncoderUNet, "n_blocks_per_stage")):
        p = PRESETS[name]
        net = cls(input_channels=2, n_stages=4, features_per_stage=feats, conv_op=torch.nn.Conv3d,
                  kernel_sizes=3, strides=strides, num_classes=3,
                  n_conv_per_stage_decoder=p.decoder_convs[:3], **{key: p.encoder_blocks[:4]})
        want = int(net.compute_conv_feature_map_size([24, 64, 48]))
        assert feature_map_elements(p.network, [24, 64, 48], strides, feats, p.encoder_blocks[:4],
                                    p.decoder_convs[:3], 2, 3) == want, name


def test_lowres_steps_of_1_03_anisotropic_axes_first():
    fp = synthetic_fingerprint([60, 400, 400], [3.0, 0.7, 0.7])
    plans = _ours(fp, ["3d_fullres", "3d_lowres"], vram_target_gb=4)
    full, low = plans["3d_fullres"], plans["3d_lowres"]
    ratio = np.asarray(low.spacing) / np.asarray(full.spacing)
    steps = np.log(ratio) / np.log(1.03)
    assert np.allclose(steps, np.round(steps), atol=1e-6)       # whole steps of 1.03 only
    assert steps[1] == steps[2] > steps[0]                       # in-plane grew first
    assert low.extra["lowres"]["fullres_patch_coverage"] < 0.25
    med = np.asarray(full.spacing) / np.asarray(low.spacing) * np.asarray(full.median_shape)
    assert np.prod(low.patch_size) / np.prod(med) >= 0.25 * 0.95  # covers enough now
    assert np.prod(full.median_shape) / np.prod(med) >= 2        # not dropped


def test_lowres_not_needed_is_a_clear_error():
    fp = synthetic_fingerprint([40, 80, 80], [1.0, 1.0, 1.0])
    assert set(_ours(fp, ["2d", "3d_fullres"])) == {"2d", "3d_fullres"}
    with pytest.raises(ConfigError) as e:
        _ours(fp, ["3d_fullres", "3d_lowres"])
    msg = str(e.value)
    assert "would not create 3d_lowres" in msg and "25%" in msg and "Remove" in msg
    # an explicit lowres spacing is the user's choice and is honoured
    plans = plan_family({"3d_lowres": Configuration(spacing=[2.0, 2.0, 2.0])}, fp)
    assert plans["3d_lowres"].spacing == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("preset,gb", [("unet", 8), ("resenc_m", 8), ("resenc_l", 24),
                                       ("resenc_xl", 40)])
def test_presets_fit_their_vram_targets(preset, gb):
    fp = synthetic_fingerprint([300, 512, 512], [1.0, 0.8, 0.8], n=50)
    plan = _ours(fp, ["3d_fullres"], preset=preset)["3d_fullres"]
    vram = plan.extra["vram"]
    assert vram["target_gb"] == gb and vram["fits"] and plan.batch_size >= 2
    ref, ref_batch = reference(PRESETS[preset], 3, gb)
    per_patch = vram["estimate"]
    # nnU-Net's budget: the batch's feature maps within the reference for the target
    assert per_patch * plan.batch_size <= ref * ref_batch * 1.5
    assert np.prod(plan.patch_size) <= 300 * 640 * 640


def test_bigger_targets_give_bigger_patches():
    fp = synthetic_fingerprint([300, 512, 512], [1.0, 0.8, 0.8], n=50)
    sizes = [np.prod(_ours(fp, ["3d_fullres"], preset=p)["3d_fullres"].patch_size)
             for p in ("resenc_m", "resenc_l", "resenc_xl")]
    assert sizes[0] < sizes[1] <= sizes[2]
    small = _ours(fp, ["3d_fullres"], preset="resenc_l", vram_target_gb=12)["3d_fullres"]
    assert np.prod(small.patch_size) < sizes[1]


def test_cascade_needs_lowres_and_all_folds():
    base = {"experiment": "x", "dataset": "d"}
    with pytest.raises(ConfigError, match="needs 3d_lowres"):
        parse_experiment({**base, "configurations": {"3d_cascade_fullres": {}}})
    with pytest.raises(ConfigError, match="all five folds"):
        parse_experiment({**base, "folds": [0, 1], "configurations": {
            "3d_lowres": {}, "3d_cascade_fullres": {}}})
    with pytest.raises(ConfigError, match="preset"):
        parse_experiment({**base, "configurations": {"2d": {"preset": "resenc_q"}}})
    exp = parse_experiment({**base, "configurations": {
        "3d_lowres": {"preset": "resenc_l", "vram_target_gb": 11}, "3d_cascade_fullres": {}}})
    assert exp.configurations["3d_lowres"].vram_target_gb == 11
