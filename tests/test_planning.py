"""plan: fingerprint, sane plans on the demo data, nnU-Net's splits, user splits honoured."""

import json

import numpy as np
import pytest
from sklearn.model_selection import KFold

from contracts.errors import ConfigError
from contracts.experiment import load_experiment
from data_helpers import small_demo, trainer, write_experiment  # noqa: F401  (fixture)
from trainer.planning.planner import pool_and_conv_props
from trainer.planning.plans import Plan
from trainer.data.splits import kfold_splits, validate_splits


@pytest.mark.parametrize("n", [5, 6, 7, 8, 24, 101])
def test_splits_match_sklearn_kfold(n):
    ids = [f"case_{i:04d}" for i in np.random.default_rng(n).permutation(n)]
    keys = np.sort(ids)
    want = [{"train": list(keys[tr]), "val": list(keys[va])}
            for tr, va in KFold(n_splits=5, shuffle=True, random_state=12345).split(keys)]
    assert kfold_splits(ids) == want


def test_pool_and_conv_props_follow_nnunet_rules():
    # anisotropic: z is not pooled until its spacing is within 2x of the in-plane one
    pools, strides, kernels, patch, div = pool_and_conv_props([3.0, 0.8, 0.8], [28, 56, 64])
    assert strides[0] == [1, 1, 1] and strides[1] == [1, 2, 2]
    assert kernels[0] == [1, 3, 3] and kernels[-1] == [3, 3, 3]
    assert len(kernels) == len(strides)
    assert [int(np.prod([s[a] for s in strides])) for a in range(3)] == div
    assert all(p % d == 0 for p, d in zip(patch, div))
    # bottleneck never below 4 voxels
    assert all(p / d >= 4 for p, d in zip(patch, div))
    # isotropic: every axis pools together
    pools, strides, kernels, patch, div = pool_and_conv_props([1.0, 1.0, 1.0], [64, 64, 64])
    assert pools == [4, 4, 4] and kernels[0] == [3, 3, 3]


def test_plan_on_demo(small_demo, tmp_path):
    exp_path = write_experiment(tmp_path / "e.yaml", small_demo, {
        "3d_fullres": {"base_features": 8, "max_features": 64, "batch_size": 2},
        "2d": {"base_features": 8, "max_features": 64, "batch_size": 8},
        # the demo's images are too small for nnU-Net to make 3d_lowres: give it a spacing
        "3d_lowres": {"spacing": [3.2, 1.7, 1.7]}})
    r = trainer("plan", "--experiment", exp_path)
    assert r.returncode == 0, r.stderr
    layout = load_experiment(exp_path).layout
    fp = json.loads(layout.fingerprint.read_text())
    assert len(fp["spacings"]) == 8 and len(fp["shapes_after_crop"]) == 8
    ct = fp["foreground_intensity"]["0"]
    assert 50 < ct["mean"] < 250 and ct["percentile_00_5"] < ct["mean"] < ct["percentile_99_5"]
    assert 0 < fp["class_voxel_fraction"]["2"] < fp["class_voxel_fraction"]["1"] < 0.5

    full = Plan.load(layout.plan("3d_fullres"))
    med = np.median(fp["spacings"], 0)
    assert np.allclose(full.spacing, med)
    assert full.spacing[0] > 2.5 * full.spacing[2]                 # thick slices kept
    assert full.kernel_sizes[0] == [1, 3, 3]                       # anisotropy: no conv along z
    assert full.strides[1] == [1, 2, 2]
    assert len(full.kernel_sizes) == len(full.strides) == len(full.filters) >= 3
    assert full.filters[0] == 8 and full.filters == sorted(full.filters) and max(full.filters) <= 64
    div = [int(np.prod([s[a] for s in full.strides])) for a in range(3)]
    assert all(p % d == 0 for p, d in zip(full.patch_size, div))
    assert all(p <= m + d for p, m, d in zip(full.patch_size, full.median_shape, div))
    norm = full.normalization[0]
    assert norm.scheme == "ct" and norm.clip[0] < norm.mean < norm.clip[1]
    assert full.batch_size == 2 and full.labels == {"background": 0, "organ": 1, "lesion": 2}

    low = Plan.load(layout.plan("3d_lowres"))
    assert all(l >= f for l, f in zip(low.spacing, full.spacing)) and low.spacing[2] > full.spacing[2]
    assert low.spacing == [3.2, 1.7, 1.7] and low.extra["next_stage"] == "3d_cascade_fullres"
    two = Plan.load(layout.plan("2d"))
    assert two.dim == 2 and len(two.patch_size) == 2 and all(len(k) == 2 for k in two.kernel_sizes)
    assert two.batch_size == 8

    splits = json.loads(layout.splits.read_text())
    assert splits == kfold_splits([f"Demo_{i:03d}" for i in range(8)])
    events = [json.loads(x) for x in (layout.stage_dir("plan") / "metrics.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "start" and events[0]["stage"] == "plan"
    assert events[-1]["event"] == "end" and events[-1]["exit_code"] == 0

    # a re-plan with different splits keeps the existing splits.json and says so
    mine = [{"train": ["Demo_000", "Demo_001"], "val": ["Demo_002"]}] * 5
    (tmp_path / "mine.json").write_text(json.dumps(mine))
    write_experiment(exp_path, small_demo, splits=str(tmp_path / "mine.json"))
    r = trainer("plan", "--experiment", exp_path, "--skip-check")
    assert r.returncode == 0, r.stderr
    assert "KEPT" in r.stderr and "plan changed" not in r.stderr     # same data, same plans
    assert json.loads(layout.splits.read_text()) == splits


def test_user_splits_are_honoured_and_validated(small_demo, tmp_path):
    mine = [{"train": [f"Demo_{j:03d}" for j in range(8) if j % 5 != k],
             "val": [f"Demo_{j:03d}" for j in range(8) if j % 5 == k]} for k in range(5)]
    (tmp_path / "mine.json").write_text(json.dumps(mine))
    exp_path = write_experiment(tmp_path / "e.yaml", small_demo, splits="mine.json")
    r = trainer("plan", "--experiment", exp_path, "--skip-check")
    assert r.returncode == 0, r.stderr
    assert json.loads(load_experiment(exp_path).layout.splits.read_text()) == mine

    bad = [{"train": ["Demo_000", "Nope_1"], "val": ["Demo_000"]}]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    write_experiment(tmp_path / "b.yaml", small_demo, splits="bad.json",
                     results=str(tmp_path / "other"))
    r = trainer("plan", "--experiment", tmp_path / "b.yaml", "--skip-check")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "Nope_1" in r.stderr and "both train and val" in r.stderr and "fold 4" in r.stderr
    with pytest.raises(ConfigError):
        validate_splits({"train": []}, ["a"], "x.json", [0])


def test_plan_refuses_a_broken_dataset(small_demo, tmp_path):
    import shutil
    d = tmp_path / "d"
    shutil.copytree(small_demo, d)
    (d / "labelsTr" / "Demo_003.nii.gz").unlink()
    r = trainer("plan", "--experiment", write_experiment(tmp_path / "e.yaml", d))
    assert r.returncode == 3 and "Demo_003" in r.stderr and "Traceback" not in r.stderr


def test_auto_patch_shrinks_to_the_budget():
    from trainer.planning.planner import auto_patch
    patch, strides, kernels, pools = auto_patch([200, 400, 400], [1.0, 1.0, 1.0], 128 ** 3)
    assert np.prod(patch) <= 128 ** 3 and all(p % 2 ** n == 0 for p, n in zip(patch, pools))
    ratio = [p / m for p, m in zip(patch, [200, 400, 400])]
    assert max(ratio) - min(ratio) < 0.15                        # shrunk relative to the median
    small, *_ = auto_patch([20, 40, 40], [3.0, 0.8, 0.8], 128 ** 3)
    assert small[0] <= 24 and small[1] <= 48                     # never beyond the median (+ padding)
