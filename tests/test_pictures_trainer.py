"""A real fold writes progress.png and previews; `foldwatch plot` redraws them from the log."""

import subprocess
import sys

import numpy as np
from PIL import Image

from train_fixture import ROOT, trainer_env
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


def test_foldwatch_plot_draws_every_fold_and_the_overlay_from_the_logs(tmp_path):
    """On demand, from metrics.jsonl alone (any trainer kind): progress.png per fold with an
    `epoch` event, and the configuration's overlay. (The trainer's own drawing while it
    trains is checked in test_train_fold, on its real run.)"""
    import yaml
    from contracts.experiment import load_experiment
    from contracts.jsonio import EventWriter
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"experiment": "p", "dataset": "d", "results": "results",
                                    "configurations": {"2d": {}}, "folds": [0, 1, 2]}))
    lay = load_experiment(path).layout
    for k in (0, 1):
        with EventWriter(lay.fold_dir("2d", k) / "metrics.jsonl") as log:
            log.write("start", configuration="2d", fold=k, attempt=1)
            for e in range(3):
                log.write("epoch", epoch=e, train_loss=1 - 0.1 * e, val_loss=1.1 - 0.1 * e,
                          val_dice=0.2 * e, val_dice_per_class=[0.2 * e, None],
                          ema_dice=0.1 * e, lr=0.01, epoch_s=3.0, data_wait_frac=0.2)
    out = subprocess.run([sys.executable, "-m", "console.clients.cli", "plot", str(path)], cwd=ROOT,
                         env=trainer_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for k in (0, 1):
        assert Image.open(lay.progress_png("2d", k)).size == (960, 1280)
    assert not lay.fold_dir("2d", 2).exists()             # no log: nothing drawn, nothing made
    assert Image.open(lay.progress_overview("2d")).size[0] >= 800
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
    probe = ("import sys; from console.clients.cli.main import main\n"
             "for argv in (['--help'], ['plot', '--help'], ['export', '--help']):\n"
             "    try: main(argv)\n"
             "    except SystemExit: pass\n"
             "print(sorted(m for m in ('matplotlib', 'PIL', 'wandb', 'tensorboardX', 'tensorboard',"
             " 'numpy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env=trainer_env())
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


def test_drawing_thread_never_makes_the_caller_wait_and_skips_stale_redraws():
    import threading
    import time

    from trainer.reporting.worker import DrawingThread
    gate, started, ran = threading.Event(), threading.Event(), []
    t = DrawingThread()
    t.submit("progress", lambda: (started.set(), gate.wait(30), ran.append("first")))
    assert started.wait(30)                     # a slow figure is being drawn
    t0 = time.monotonic()
    for i in range(5):                          # five epochs end while it draws
        t.submit("progress", lambda i=i: ran.append(f"epoch {i}"))
    t.submit("previews-3", lambda: ran.append("previews"))
    t.submit("boom", lambda: 1 / 0)            # a failing picture: reported, not raised
    assert time.monotonic() - t0 < 1.0
    gate.set()
    assert t.drain(30)
    t.close()
    assert ran == ["first", "epoch 4", "previews"] and t.errors == 1


def test_console_draws_progress_png_for_a_command_trainer(tmp_path):
    """A `trainer: command` run writes only metrics.jsonl; the console's plotter draws it."""
    import yaml
    from console.bridges.plotter import KindPlotter
    from contracts.experiment import load_experiment
    from contracts.jsonio import EventWriter
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"experiment": "c", "trainer": "command", "results": "results",
                                    "configurations": {"unet": {}}, "folds": [0],
                                    "command": {"argv": ["python", "train.py"]}}))
    exp = load_experiment(path)
    with EventWriter(exp.layout.fold_dir("unet", 0) / "metrics.jsonl") as log:
        for e in range(3):
            log.write("epoch", epoch=e, train_loss=1 - 0.1 * e, val_loss=1.0, val_dice=0.1 * e)
    plotter = KindPlotter(exp, every_s=3600)
    try:
        assert plotter.draw_if_changed()
        assert not plotter.draw_if_changed()          # nothing new: no drawing
    finally:
        plotter.close()
    assert Image.open(exp.layout.progress_png("unet", 0)).size == (960, 1280)
