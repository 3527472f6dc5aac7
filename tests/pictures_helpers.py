"""Checks of the pictures a real trainer leaves in a fold folder (docs/pictures.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from trainer.reporting.previews import GT_RGB, LEGEND_H


def colour_mask(png: Path, rgb) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(Image.open(png).convert("RGB"))
    return np.all(a == np.array(rgb, np.uint8), axis=2), a


def assert_fold_pictures(config_dir: Path, fold: int, last_epoch: int) -> None:
    """progress.png, the folds' overlay, and the previews of the last epoch."""
    fold_dir = config_dir / f"fold_{fold}"
    png = Image.open(fold_dir / "progress.png")
    assert png.size[0] >= 800 and png.size[1] >= 1000
    assert Image.open(config_dir / "progress_folds.png").size[0] >= 800
    index = json.loads((fold_dir / "previews/latest.json").read_text())
    assert index["epoch"] == last_epoch and index["source"] == "epoch"
    roles = [i["role"] for i in index["items"]]
    assert roles[:2] == ["fixed", "fixed"] and set(roles) <= {"fixed", "worst"}
    for item in index["items"]:
        pic = fold_dir / "previews" / item["png"]
        assert Image.open(pic).size[1] > LEGEND_H
        assert (fold_dir / "previews" / item["thumb"]).read_bytes().startswith(b"P6\n")
        gt, _ = colour_mask(pic, GT_RGB)
        assert gt[:-LEGEND_H].any(), "the fixed cases have foreground: their outline is drawn"
