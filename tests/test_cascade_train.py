"""The cascade's fold: lowres predictions as one-hot channels, exact resume, clear errors."""

import json
import signal
import subprocess

import numpy as np
import pytest
import torch

from cascade_fixture import write_cascade_experiment
from contracts.jsonio import iter_jsonl
from train_fixture import ROOT, run_train_here, train_cmd, trainer_env

CASCADE = "3d_cascade_fullres"
# inline data loading (num_workers 0): exact resume with worker processes is
# test_train_resume's; here it is the extra channels that must come back identical
CFG = dict(epochs=2, ipe=4, val_iterations=1, num_workers=0)


def _fold(exp, k=0):
    return exp.parent / f"results/tiny/{CASCADE}/fold_{k}"


def test_cascade_fold_trains_on_lowres_predictions_and_resumes_exactly(tmp_path):
    # the reference and the resume in this process (run_train_here); the stop hits a process
    straight = write_cascade_experiment(tmp_path / "a", **CFG)
    r = run_train_here(straight, "--skip-validation", configuration=CASCADE)
    assert r.returncode == 0, r.stderr
    prev_dir = straight.parent / f"results/tiny/preprocessed/{CASCADE}/previous_stage"
    prev = np.load(prev_dir / "case_000_prev.npy")
    seg = np.load(prev_dir.parent / "case_000_seg.npy")
    assert prev.shape == seg.shape and 0.95 < (prev == seg).mean() < 1.0  # lowres, not the truth
    ckpt = torch.load(_fold(straight) / "checkpoints/final.pt", weights_only=True)
    assert ckpt["model"]["input_block.conv1.conv.weight"].shape[1] == 1 + 2   # CT + 2 one-hot

    exp = write_cascade_experiment(tmp_path / "b", **CFG)
    metrics = _fold(exp) / "metrics.jsonl"
    p = subprocess.Popen(train_cmd(exp, CASCADE, 0, "--skip-validation"), cwd=ROOT,
                         env=trainer_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    import time
    deadline = time.monotonic() + 180
    while not (metrics.exists() and any(e["event"] == "iter" and e["epoch"] == 1 and e["iter"] >= 1
                                        for e in iter_jsonl(metrics))):
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=120)
    assert p.returncode == 0
    r = run_train_here(exp, "--resume", configuration=CASCADE)     # trains on, then validates
    assert r.returncode == 0, r.stderr
    a = torch.load(_fold(straight) / "checkpoints/final.pt", weights_only=True)["model"]
    b = torch.load(_fold(exp) / "checkpoints/final.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)            # bit-identical after the stop
    summary = json.loads((_fold(exp) / "validation/summary.json").read_text())
    assert summary["foreground_mean"]["Dice"] is not None
    assert len(summary["metric_per_case"]) == 2               # whole volumes, extra channels


def test_cascade_without_lowres_predictions_is_a_clear_error(tmp_path):
    from contracts.errors import DatasetError
    from contracts.experiment import load_experiment
    from trainer.inference.cascade import prepare_previous_stage
    from trainer.planning.plans import Plan

    exp = load_experiment(write_cascade_experiment(tmp_path, **CFG))
    (tmp_path / "results/tiny/3d_lowres/fold_2/validation/case_002.npz").unlink()
    plan = Plan.load(exp.layout.plan(CASCADE))
    folder = exp.layout.preprocessed(CASCADE)
    with pytest.raises(DatasetError) as e:
        prepare_previous_stage(exp, plan, folder, ["case_000", "case_002"])
    msg = str(e.value)
    assert "case_002.npz" in msg and "3d_lowres/2" in msg and "case_000" not in msg
    # nothing half-written: the case that had its prediction is not cached either
    assert not list((folder / "previous_stage").glob("*.npy"))


def test_previous_stage_augmentations_follow_nnunet():
    from trainer.training.cascade_augment import (augment_previous_stage, random_binary_operator,
                                                  remove_random_component)
    onehot = np.zeros((2, 16, 24, 24), np.float32)
    onehot[0, 2:14, 2:22, 2:22] = 1                      # a big organ (> 15 % of the patch)
    onehot[1, 6:8, 6:8, 6:8] = 1                         # a lesion inside it ...
    onehot[0, 6:8, 6:8, 6:8] = 0
    onehot[1, 14:16, 0:2, 0:2] = 1                       # ... and a small island
    changed = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        out = random_binary_operator(onehot.copy(), rng)
        assert out.sum(0).max() <= 1                     # still one label per voxel
        changed += not np.array_equal(out, onehot)
        out = remove_random_component(onehot.copy(), np.random.default_rng(seed))
        removed = onehot.sum() - out.sum()
        assert removed in (0, 8)                         # one whole small component at most
        assert out[0].sum() == onehot[0].sum()           # the organ is > 15 %: never removed
    assert changed > 4
    a = augment_previous_stage(onehot, np.random.default_rng(5))
    b = augment_previous_stage(onehot, np.random.default_rng(5))
    assert np.array_equal(a, b)                          # seeded per sample: resume stays exact
