"""The cascade's fold: lowres predictions as one-hot channels, exact resume, clear errors."""

import json
import signal
import subprocess

import numpy as np
import torch

from cascade_fixture import write_cascade_experiment
from contracts.jsonio import iter_jsonl
from train_fixture import ROOT, run_train, train_cmd, trainer_env

CASCADE = "3d_cascade_fullres"
CFG = dict(epochs=2, ipe=8, val_iterations=1, num_workers=1)


def _fold(exp, k=0):
    return exp.parent / f"results/tiny/{CASCADE}/fold_{k}"


def test_cascade_fold_trains_on_lowres_predictions_and_resumes_exactly(tmp_path):
    straight = write_cascade_experiment(tmp_path / "a", **CFG)
    r = run_train(straight, configuration=CASCADE)
    assert r.returncode == 0, r.stderr
    prev_dir = straight.parent / f"results/tiny/preprocessed/{CASCADE}/previous_stage"
    prev = np.load(prev_dir / "case_000_prev.npy")
    seg = np.load(prev_dir.parent / "case_000_seg.npy")
    assert prev.shape == seg.shape and 0.95 < (prev == seg).mean() < 1.0  # lowres, not the truth
    ckpt = torch.load(_fold(straight) / "checkpoints/final.pt", weights_only=True)
    assert ckpt["model"]["input_block.conv1.conv.weight"].shape[1] == 1 + 2   # CT + 2 one-hot
    summary = json.loads((_fold(straight) / "validation/summary.json").read_text())
    assert summary["foreground_mean"]["Dice"] is not None

    exp = write_cascade_experiment(tmp_path / "b", **CFG)
    metrics = _fold(exp) / "metrics.jsonl"
    p = subprocess.Popen(train_cmd(exp, CASCADE, 0, "--skip-validation"), cwd=ROOT,
                         env=trainer_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    import time
    deadline = time.monotonic() + 180
    while not (metrics.exists() and any(e["event"] == "iter" and e["epoch"] == 1 and e["iter"] >= 2
                                        for e in iter_jsonl(metrics))):
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=120)
    assert p.returncode == 0
    r = run_train(exp, "--resume", configuration=CASCADE)
    assert r.returncode == 0, r.stderr
    a = torch.load(_fold(straight) / "checkpoints/final.pt", weights_only=True)["model"]
    b = torch.load(_fold(exp) / "checkpoints/final.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)            # bit-identical after the stop


def test_cascade_without_lowres_predictions_is_a_clear_error(tmp_path):
    exp = write_cascade_experiment(tmp_path, **CFG)
    (tmp_path / "results/tiny/3d_lowres/fold_2/validation/case_002.npz").unlink()
    r = run_train(exp, configuration=CASCADE)
    assert r.returncode == 3 and "Traceback" not in r.stderr
    assert "case_002.npz" in r.stderr and "3d_lowres/2" in r.stderr
