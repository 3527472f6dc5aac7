"""A real fold writes progress.png and previews; `foldwatch plot` redraws them from the log."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from train_fixture import ROOT, run_train, trainer_env, write_experiment
from trainer.reporting.previews import (BOTH_RGB, GT_RGB, LEGEND_H, PRED_RGB, Preview,
                                        render_png, scale_for)


def _colour_mask(png, rgb):
    a = np.asarray(Image.open(png).convert("RGB"))
    return np.all(a == np.array(rgb, np.uint8), axis=2), a


def test_preview_png_has_outline_colours_where_the_masks_are(tmp_path):
    h, w = 40, 48
    truth = np.zeros((h, w), np.int16)
    truth[5:20, 5:20] = 1                      # only ground truth here
    pred = np.zeros((h, w), np.int16)
    pred[25:35, 30:44] = 2                     # only prediction here
    img = np.random.default_rng(0).normal(size=(h, w)).astype(np.float32)
    p = Preview("case_7", "worst", img, truth, pred, dice=0.0, slice_index=3)
    out = render_png(p, "epoch 3 case_7 Dice 0.000", tmp_path / "p.png")
    s = scale_for((h, w))
    gt, a = _colour_mask(out, GT_RGB)
    pr, _ = _colour_mask(out, PRED_RGB)
    assert a.shape[0] == h * s + LEGEND_H and a.shape[1] >= w * s
    body_gt, body_pr = gt[: h * s], pr[: h * s]
    ys, xs = np.nonzero(body_gt)
    assert len(ys) and ys.min() >= 5 * s and ys.max() < 20 * s and xs.min() >= 5 * s and xs.max() < 20 * s
    ys, xs = np.nonzero(body_pr)
    assert len(ys) and ys.min() >= 25 * s and ys.max() < 35 * s and xs.min() >= 30 * s
    assert gt[h * s:].any() and pr[h * s:].any()        # the legend swatches
    assert not _colour_mask(out, BOTH_RGB)[0][: h * s].any()   # the outlines do not meet


def test_training_writes_progress_png_and_previews_then_plot_redraws(tmp_path):
    exp = write_experiment(tmp_path, epochs=2, ipe=2)
    r = run_train(exp, "--skip-validation")
    assert r.returncode == 0, r.stderr
    fold = exp.parent / "results/tiny/3d_fullres/fold_0"
    png = Image.open(fold / "progress.png")
    assert png.size[0] >= 800 and png.size[1] >= 1000
    index = json.loads((fold / "previews/latest.json").read_text())
    assert index["epoch"] == 1 and index["source"] == "epoch"
    roles = [i["role"] for i in index["items"]]
    assert roles[:2] == ["fixed", "fixed"] and set(roles) <= {"fixed", "worst"}
    for item in index["items"]:
        pic = Image.open(fold / "previews" / item["png"])
        assert pic.size[1] > LEGEND_H
        assert (fold / "previews" / item["thumb"]).read_bytes().startswith(b"P6\n")
        gt, _ = _colour_mask(fold / "previews" / item["png"], GT_RGB)
        assert gt[:-LEGEND_H].any(), "the fixed cases have foreground: their outline is drawn"
    # on demand, from the metric log only: progress.png again and the folds' overlay
    (fold / "progress.png").unlink()
    out = subprocess.run([sys.executable, "-m", "console.cli", "plot", str(exp)], cwd=ROOT,
                         env=trainer_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (fold / "progress.png").exists()
    assert Image.open(exp.parent / "results/tiny/3d_fullres/progress_folds.png").size[0] >= 800
    assert "progress_folds.png" in out.stdout
