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


def case_patch(data: np.ndarray, seg: np.ndarray, patch: list[int], prev=None, foreground=()):
    """(C, *patch) image, (*patch) labels and the preview slice's index inside the patch.

    Cascade: `prev` (the previous stage's label map) is cut with the same window and
    appended one-hot per `foreground` label, as the network was trained on it."""
    z = best_slice(seg)
    cy, cx = _centre(seg[z])
    if len(patch) == 2:
        start = [_start(c, p, d, None) for c, p, d in zip((cy, cx), patch, seg.shape[1:])]
        img = _crop_pad(np.asarray(data[:, z]), start, patch, 0.0)
        lab, zi = _crop_pad(np.asarray(seg[z]), start, patch, 0), None
        window = None if prev is None else _crop_pad(np.asarray(prev[z]), start, patch, 0)
    else:
        start = [_start(c, p, d, None) for c, p, d in zip((z, cy, cx), patch, seg.shape)]
        img = _crop_pad(np.asarray(data), start, patch, 0.0)
        lab, zi = _crop_pad(np.asarray(seg), start, patch, 0), z - start[0]
        window = None if prev is None else _crop_pad(np.asarray(prev), start, patch, 0)
    if window is not None:
        from trainer.inference.cascade import one_hot
        img = np.concatenate([img.astype(np.float32), one_hot(window, list(foreground))])
    return img, lab, zi, z


@torch.no_grad()
def score_cases(net: torch.nn.Module, plan: Plan, folder: Path, cases: list[str],
                device: torch.device, amp: bool = False, previous: Path | None = None
                ) -> list[Preview]:
    """A Preview (role 'scored') of each case, the network in eval mode for the pass.

    `previous`: the cascade's folder of previous-stage label maps (its extra input)."""
    from trainer.data.labelmaps import to_label_map
    was_training = net.training
    net.eval()
    out = []
    try:
        for case in cases:
            data, seg, _ = load_case(folder, case, mmap=True)
            if seg is None:
                continue
            prev = None
            if previous is not None:
                from trainer.inference.cascade import load_previous
                prev = load_previous(previous, case)
            img, lab, zi, z = case_patch(data, np.asarray(seg), list(plan.patch_size), prev,
                                         plan.foreground_labels)
            x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None].to(device)
            with torch.autocast("cuda", enabled=amp):
                logits = net(x)[0].float()
            # region-based: one sigmoid per region, painted by regions_class_order
            probs = torch.sigmoid(logits) if plan.has_regions else logits
            pred = to_label_map(probs.cpu().numpy(), sorted(plan.labels.values()),
                                plan.regions_class_order)
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
