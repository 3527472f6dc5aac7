"""The trainer's human-readable epoch line on stdout (nnU-Net style)."""

from __future__ import annotations

import math

from trainer.training.loop import epoch_line


def test_epoch_line_has_every_figure_and_marks_a_new_best():
    rec = {"epoch": 4, "train_loss": 0.41234, "val_loss": 0.38, "val_dice": 0.8,
           "val_dice_per_class": [0.912, None], "ema_dice": 0.7, "lr": 0.00995,
           "epoch_s": 40.23, "data_wait_frac": 0.1, "peak_mem_mb": 100.0}
    line = epoch_line(rec, 1000, 0.85123)
    assert line == ("epoch 5/1000  train_loss 0.4123  val_loss 0.3800  pseudo-Dice [0.9120, nan]"
                    "  epoch_time 40.2s  lr 0.00995  new best EMA pseudo-Dice 0.8512")
    assert "new best" not in epoch_line({**rec, "val_loss": math.nan}, 1000, None)
    assert "val_loss nan" in epoch_line({**rec, "val_loss": math.nan}, 1000, None)
