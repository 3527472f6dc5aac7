"""Dice + cross-entropy with nnU-Net's batch Dice and deep-supervision weighting."""

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


class DeepSupervisionLoss(torch.nn.Module):
    """Weighted sum of dice_ce over the network's outputs (full resolution first)."""

    def __init__(self, weights: list[float]) -> None:
        super().__init__()
        self.weights = weights

    def forward(self, outputs: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        total = outputs[0].new_zeros((), dtype=torch.float32)
        for w, out in zip(self.weights, outputs):
            if w:
                total = total + w * dice_ce(out, target)
        return total
