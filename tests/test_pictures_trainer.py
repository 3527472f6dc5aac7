"""A real fold writes progress.png and previews; `foldwatch plot` redraws them from the log."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from train_fixture import ROOT, train_cmd, trainer_env, write_experiment
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
    r = subprocess.run(train_cmd(exp, "3d_fullres", 0, "--skip-validation"), cwd=ROOT,
                       env=trainer_env(FOLDWATCH_PROGRESS_PLOT="1"), capture_output=True,
                       text=True, timeout=300)
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
    overlay = exp.parent / "results/tiny/3d_fullres/progress_folds.png"
    assert overlay.exists()                       # drawn by the trainer at its end
    (fold / "progress.png").unlink()
    overlay.unlink()
    out = subprocess.run([sys.executable, "-m", "console.cli", "plot", str(exp)], cwd=ROOT,
                         env=trainer_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (fold / "progress.png").exists()
    assert Image.open(exp.parent / "results/tiny/3d_fullres/progress_folds.png").size[0] >= 800
    assert "progress_folds.png" in out.stdout


def test_epoch_records_keep_one_point_per_epoch_and_read_incrementally(tmp_path):
    from contracts.jsonio import EventWriter
    from trainer.reporting.progress_plot import EpochHistory
    path = tmp_path / "metrics.jsonl"
    history = EpochHistory(path)
    with EventWriter(path) as log:
        for e in (0, 1, 2):
            log.write("epoch", epoch=e, train_loss=1.0)
        assert [r["epoch"] for r in history.update()] == [0, 1, 2]
        log.write("start", attempt=2)
        for e in (2, 3):                                   # epoch 2 redone after a kill
            log.write("epoch", epoch=e, train_loss=0.5)
    with open(path, "a") as f:
        f.write('{"event": "epoch", "epoch": 4')           # a partial line waits
    recs = history.update()
    assert [r["epoch"] for r in recs] == [0, 1, 2, 3] and recs[2]["train_loss"] == 0.5


def test_console_help_and_plot_help_import_no_drawing_or_bridge_library():
    probe = ("import sys; from console.cli import main\n"
             "for argv in (['--help'], ['plot', '--help'], ['export', '--help']):\n"
             "    try: main(argv)\n"
             "    except SystemExit: pass\n"
             "print(sorted(m for m in ('matplotlib', 'PIL', 'wandb', 'tensorboardX', 'tensorboard',"
             " 'numpy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env=trainer_env())
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
