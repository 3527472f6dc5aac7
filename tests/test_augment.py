"""Augmentation: nnU-Net's kinds, ranges, probabilities and anisotropic handling."""

import numpy as np
import pytest

from trainer.training import augment as A


def test_plan_follows_nnunet_patch_rules():
    iso = A.AugmentPlan.for_patch([64, 64, 64])
    assert iso.dim == 3 and not iso.dummy_2d and iso.max_angle == pytest.approx(np.pi / 6)
    thick = A.AugmentPlan.for_patch([16, 96, 96])            # 96/16 > 3: dummy 2d
    assert thick.dummy_2d and thick.max_angle == pytest.approx(np.pi)
    assert A.AugmentPlan.for_patch([48, 48]).max_angle == pytest.approx(np.pi)
    assert A.AugmentPlan.for_patch([32, 64]).max_angle == pytest.approx(np.deg2rad(15))


def test_spatial_draws_rotate_about_all_three_axes_in_3d_and_in_plane_when_anisotropic():
    rng = np.random.default_rng(0)
    iso, thick = A.AugmentPlan.for_patch([32, 32, 32]), A.AugmentPlan.for_patch([8, 64, 64])
    mats = [A.spatial_matrix(rng, iso) for _ in range(4000)]
    drawn = [m for m in mats if m is not None]
    assert 0.33 < len(drawn) / len(mats) < 0.39             # 1 - 0.8 * 0.8 = 0.36
    moved_z = [m for m in drawn if abs(m[0, 0] / np.linalg.norm(m[0]) - 1) > 1e-6]
    assert len(moved_z) > 0.3 * len(drawn)                   # z mixes with y/x: out-of-plane
    for m in drawn:                                          # rotation * uniform scale
        s = np.cbrt(np.linalg.det(m))
        assert 0.7 - 1e-9 <= s <= 1.4 + 1e-9
        assert np.allclose(m @ m.T, s * s * np.eye(3), atol=1e-9)
        angle = np.arccos(np.clip(m[2, 2] / s, -1, 1))
        assert angle <= np.deg2rad(30) * np.sqrt(2) + 1e-6
    for _ in range(500):
        m = A.spatial_matrix(rng, thick)
        if m is not None:
            assert m[0, 0] == 1 and not m[0, 1:].any() and not m[1:, 0].any()


def test_intensity_kinds_fire_with_nnunet_probabilities(monkeypatch):
    calls = {k: 0 for k in ("blur", "low")}
    real_blur, real_low = A.gaussian_filter, A._low_resolution
    monkeypatch.setattr(A, "gaussian_filter",
                        lambda *a, **k: calls.__setitem__("blur", calls["blur"] + 1) or real_blur(*a, **k))
    monkeypatch.setattr(A, "_low_resolution",
                        lambda *a, **k: calls.__setitem__("low", calls["low"] + 1) or real_low(*a, **k))
    rng = np.random.default_rng(1)
    aug = A.AugmentPlan.for_patch([4, 8, 8])
    img = rng.normal(size=(1, 4, 8, 8)).astype(np.float32)
    n, changed = 3000, 0
    for _ in range(n):
        out = A.intensity(img, rng, aug)
        changed += not np.array_equal(out, img)
    # blur: 0.2 * 0.5 per channel; low resolution 0.25 * 0.5
    assert 0.08 < calls["blur"] / n < 0.12
    assert 0.105 < calls["low"] / n < 0.145
    # P(nothing) = 0.9 * 0.9 * 0.85 * 0.85 * 0.875 * 0.9 * 0.7 = 0.323
    assert 0.64 < changed / n < 0.71


def test_low_resolution_keeps_z_for_dummy_2d_and_contrast_keeps_range():
    rng = np.random.default_rng(2)
    ch = rng.normal(size=(6, 16, 16)).astype(np.float32)
    out = A._low_resolution(ch, 0.5, keep_z=True)
    assert out.shape == ch.shape
    # every z slice was processed on its own: a z-only pattern survives exactly
    zonly = np.broadcast_to(np.arange(6, dtype=np.float32)[:, None, None], ch.shape).copy()
    assert np.allclose(A._low_resolution(zonly, 0.5, keep_z=True), zonly)
    assert not np.allclose(A._low_resolution(zonly, 0.5, keep_z=False), zonly)
    assert all(0.75 <= A.bg_factor(rng, 0.75, 1.25) <= 1.25 for _ in range(100))


def test_warp_moves_labels_with_the_image_and_is_deterministic():
    rng = np.random.default_rng(4)
    aug = A.AugmentPlan.for_patch([16, 16, 16])
    region = np.zeros((24, 24, 24), np.uint8)
    region[6:18, 6:18, 6:18] = 1
    img = region[None].astype(np.float32) * 5
    m = A._rotation(0, 0.4) @ A._rotation(2, 0.3)
    out, seg = A.warp(img, region, m, [16, 16, 16])
    assert out.shape == (1, 16, 16, 16) and seg.shape == (16, 16, 16)
    assert ((out[0] > 2.5) == (seg == 1)).mean() > 0.97        # labels follow the image
    a = A.augment(img, region, np.random.default_rng(9), aug, m, [16, 16, 16])
    b = A.augment(img, region, np.random.default_rng(9), aug, m, [16, 16, 16])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def _scipy_warp(img, seg, matrix, shape):
    """The reference: scipy's affine_transform per channel and per label indicator + argmax."""
    from scipy.ndimage import affine_transform
    offset = (np.asarray(seg.shape, float) - 1) / 2 - matrix @ ((np.asarray(shape, float) - 1) / 2)
    ref = np.stack([affine_transform(ch, matrix, offset, output_shape=shape, order=1,
                                     mode="nearest") for ch in img])
    labels = np.unique(seg)
    scores = np.stack([affine_transform((seg == v).astype(np.float32), matrix, offset,
                                        output_shape=shape, order=1, mode="nearest")
                       for v in labels])
    return ref, labels[scores.argmax(0)]


@pytest.mark.parametrize("region,patch,labels", [((30, 70, 70), (16, 48, 48), 4),
                                                 ((25, 41, 50), (20, 30, 40), 40),
                                                 ((96, 96), (64, 64), 3)])
def test_warp_matches_scipy_affine_transform(monkeypatch, region, patch, labels):
    from scipy.ndimage import gaussian_filter
    monkeypatch.setattr(A, "LABEL_CHUNK", 7)      # several chunks for the wide label set
    rng = np.random.default_rng(3)
    img = rng.normal(size=(2, *region)).astype(np.float32)
    seg = (gaussian_filter(img[0], 2) * labels * 3).clip(0, labels - 1).astype(np.uint8)
    if len(patch) == 3:
        m = A._rotation(0, 0.3) @ A._rotation(1, -0.2) @ A._rotation(2, 0.5) * 1.1
    else:
        c, s = np.cos(0.5), np.sin(0.5)
        m = np.array([[c, -s], [s, c]]) * 0.8
    out, lab = A.warp(img, seg, m, patch)
    ref, ref_lab = _scipy_warp(img, seg, m, patch)
    assert np.abs(out - ref).max() < 1e-4
    assert lab.dtype == seg.dtype and len(np.unique(seg)) > 2
    assert (lab == ref_lab).mean() > 0.999            # float ties may break either way


def test_the_previous_stage_takes_the_labels_spatial_transform_and_mirroring():
    rng = np.random.default_rng(6)
    aug = A.AugmentPlan.for_patch([12, 20, 20])
    region = np.zeros((20, 30, 30), np.uint8)
    region[4:15, 8:24, 5:20] = 1
    region[8:11, 12:16, 9:13] = 2
    img = rng.normal(size=(1, *region.shape)).astype(np.float32)
    m = A._rotation(1, 0.35) @ A._rotation(2, -0.6) * 0.9
    for seed in range(6):                               # both mirroring outcomes of each axis
        _, lab, prev = A.augment(img, region, np.random.default_rng(seed), aug, m,
                                 [12, 20, 20], extra=region.copy())
        assert np.array_equal(lab, prev)                # warped and flipped exactly alike
        _, lab2 = A.augment(img, region, np.random.default_rng(seed), aug, m, [12, 20, 20])
        assert np.array_equal(lab, lab2)                # the extra map draws nothing
    _, lab, prev = A.augment(img, region, rng, aug, None, [12, 20, 20], extra=region.copy())
    assert lab.shape == prev.shape == (12, 20, 20) and np.array_equal(lab, prev)


def test_cascade_morphology_by_distance_transform_equals_the_ball_operators():
    from scipy import ndimage

    from trainer.training import cascade_augment as C
    dil = ndimage.binary_dilation
    ero = lambda x, s: ndimage.binary_erosion(x, s, border_value=1)   # noqa: E731
    reference = {C._dilate: dil, C._erode: ero, C._open: lambda x, s: dil(ero(x, s), s),
                 C._close: lambda x, s: ero(dil(x, s), s)}
    rng = np.random.default_rng(0)
    for t in range(24):
        shape = (10, 24, 24) if t % 2 else (32, 32)
        x = ndimage.gaussian_filter(rng.normal(size=shape), 1.5) > rng.uniform(0, 0.2)
        if t == 4:
            x[:] = False
        if t == 7:
            x[:] = True
        radius = float(rng.uniform(*C.STREL_RADIUS))
        r = int(np.floor(radius))                      # nnU-Net's ball: |g|^2 <= radius^2
        grid = np.ogrid[tuple(slice(-r, r + 1) for _ in shape)]
        ball = sum(g.astype(float) ** 2 for g in grid) <= radius ** 2
        for ours, ref in reference.items():
            assert np.array_equal(ours(x, radius), ref(x, ball)), (ours.__name__, shape, radius)
