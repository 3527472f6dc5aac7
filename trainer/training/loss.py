"""Dice + cross-entropy (labels) or Dice + BCE (regions), nnU-Net's batch Dice and deep-supervision weighting."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Mean soft Dice over foreground classes, TP/FP/FN summed over the batch (nnU-Net batch_dice)."""
    probs = torch.softmax(logits.float(), 1)
    onehot = torch.zeros_like(probs).scatter_(1, target.long().unsqueeze(1), 1.0)
    axes = [0] + list(range(2, probs.dim()))
    probs, onehot = probs[:, 1:], onehot[:, 1:]
    tp = (probs * onehot).sum(axes)
    fp = (probs * (1 - onehot)).sum(axes)
    fn = ((1 - probs) * onehot).sum(axes)
    dice = (2 * tp + smooth) / (2 * tp + fp + fn + smooth).clamp_min(1e-8)
    return dice.mean()


def dice_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus (1 - soft Dice without background)."""
    ce = F.cross_entropy(logits.float(), target.long())
    return ce + (1.0 - soft_dice(logits, target))


def region_targets(target: torch.Tensor, regions: list[list[int]]) -> torch.Tensor:
    """(B, *S) label map -> (B, R, *S) float: 1 where the voxel's label belongs to region r."""
    t = target.long()
    masks = []
    for values in regions:
        m = torch.zeros_like(t, dtype=torch.bool)
        for v in values:
            m |= t == v
        masks.append(m)
    return torch.stack(masks, 1).float()


def region_dice_bce(logits: torch.Tensor, target: torch.Tensor, regions: list[list[int]],
                    smooth: float = 1e-5) -> torch.Tensor:
    """nnU-Net DC_and_BCE_loss: BCE with logits + (1 - soft Dice of the sigmoid over every region)."""
    logits = logits.float()
    onehot = region_targets(target, regions)
    bce = F.binary_cross_entropy_with_logits(logits, onehot)
    probs = torch.sigmoid(logits)
    axes = [0] + list(range(2, probs.dim()))
    tp = (probs * onehot).sum(axes)
    fp = (probs * (1 - onehot)).sum(axes)
    fn = ((1 - probs) * onehot).sum(axes)
    dice = (2 * tp + smooth) / (2 * tp + fp + fn + smooth).clamp_min(1e-8)
    return bce + (1.0 - dice.mean())


def make_loss(regions: list[list[int]] | None):
    """The loss of one output: dice_ce, or region_dice_bce for region-based plans."""
    if regions:
        return lambda logits, target: region_dice_bce(logits, target, regions)
    return dice_ce


class DeepSupervisionLoss(torch.nn.Module):
    """Weighted sum of the loss over the network's outputs (full resolution first)."""

    def __init__(self, weights: list[float], regions: list[list[int]] | None = None) -> None:
        super().__init__()
        self.weights = weights
        self.loss = make_loss(regions)

    def forward(self, outputs: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        total = outputs[0].new_zeros((), dtype=torch.float32)
        for w, out in zip(self.weights, outputs):
            if w:
                total = total + w * self.loss(out, target)
        return total
