"""Which slices the previews show and what the network predicts there (main thread, torch).

One network pass per scored case on a patch centred on the case's fullest foreground slice:
cheap next to the pseudo-Dice batches, and the same patch every epoch, so a fixed case's
previews are comparable over time. The Dice shown is that patch's foreground Dice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trainer.planning.plans import Plan
from trainer.planning.preprocessed import load_case
from trainer.reporting.previews import Preview, best_slice, dice
from trainer.training.sampling import _crop_pad, _start


def _centre(seg2d: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(seg2d > 0)
    if len(ys) == 0:
        return [seg2d.shape[0] // 2, seg2d.shape[1] // 2]
    return [int(ys.mean()), int(xs.mean())]


def case_patch(data: np.ndarray, seg: np.ndarray, patch: list[int]):
    """(C, *patch) image, (*patch) labels and the preview slice's index inside the patch."""
    z = best_slice(seg)
    cy, cx = _centre(seg[z])
    if len(patch) == 2:
        start = [_start(c, p, d, None) for c, p, d in zip((cy, cx), patch, seg.shape[1:])]
        img = _crop_pad(np.asarray(data[:, z]), start, patch, 0.0)
        return img, _crop_pad(np.asarray(seg[z]), start, patch, 0), None, z
    start = [_start(c, p, d, None) for c, p, d in zip((z, cy, cx), patch, seg.shape)]
    img = _crop_pad(np.asarray(data), start, patch, 0.0)
    return img, _crop_pad(np.asarray(seg), start, patch, 0), z - start[0], z


@torch.no_grad()
def score_cases(net: torch.nn.Module, plan: Plan, folder: Path, cases: list[str],
                device: torch.device, amp: bool = False) -> list[Preview]:
    """A Preview (role 'scored') of each case, the network in eval mode for the pass."""
    was_training = net.training
    net.eval()
    out = []
    try:
        for case in cases:
            data, seg, _ = load_case(folder, case, mmap=True)
            if seg is None:
                continue
            img, lab, zi, z = case_patch(data, np.asarray(seg), list(plan.patch_size))
            x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None].to(device)
            with torch.autocast("cuda", enabled=amp):
                pred = net(x).argmax(1)[0].cpu().numpy().astype(np.int16)
            lab = np.asarray(lab).astype(np.int16)
            score = dice(pred, lab)
            if zi is not None:          # 3d: show the fullest slice of the patch
                img, lab, pred = img[:, zi], lab[zi], pred[zi]
            out.append(Preview(case=case, role="scored", image=np.asarray(img[0], np.float32),
                               truth=lab, pred=pred, dice=score, slice_index=z))
    finally:
        net.train(was_training)
    return out


def pick(scored: list[Preview], fixed: int) -> list[Preview]:
    """The first `fixed` cases, plus the worst-scoring one when it is not among them."""
    chosen = scored[:fixed]
    for p in chosen:
        p.role = "fixed"
    rated = [p for p in scored if p.dice is not None]
    if rated:
        worst = min(rated, key=lambda p: p.dice)
        if worst not in chosen:
            worst.role = "worst"
            chosen.append(worst)
    return chosen
