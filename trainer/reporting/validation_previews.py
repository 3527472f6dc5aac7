"""Previews of the fold's final validation: the fixed cases and the worst case by Dice.

Fed case by case from validate_fold with the whole-volume prediction and reference in the
original geometry; keeps only 2-D slices, so memory stays flat however many cases there are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trainer.reporting.previews import Preview, volume_preview, write_previews


class ValidationPreviews:
    def __init__(self, cases: list[str], fixed: int, folder: Path) -> None:
        self.fixed = set(sorted(cases)[:fixed])
        self.folder = folder
        self.chosen: dict[str, Preview] = {}
        self.worst: Preview | None = None

    def consider(self, case: str, props: dict, pred: np.ndarray, ref: np.ndarray) -> None:
        from trainer.reporting.previews import dice
        score = dice(np.asarray(pred), np.asarray(ref))
        fixed = case in self.fixed
        worse = score is not None and (self.worst is None or score < self.worst.dice)
        if not (fixed or worse):
            return
        files = props.get("image_files") or []
        if not files or not Path(files[0]).exists():
            return                       # the raw image moved: no picture, validation goes on
        from trainer.data.geometry import load_images
        image = load_images([files[0]])[0][0]     # first channel; NIfTI or a PNG/JPEG slice
        p = volume_preview(case, image, pred, ref)
        if fixed:
            p.role = "fixed"
            self.chosen[case] = p
        if worse:
            self.worst = Preview(case, "worst", p.image, p.truth, p.pred, p.dice, p.slice_index)

    def write(self) -> dict | None:
        items = [self.chosen[c] for c in sorted(self.chosen)]
        if self.worst is not None and self.worst.case not in self.chosen:
            items.append(self.worst)
        if not items:
            return None
        return write_previews(items, self.folder, None, "validation", prefix="validation_")
