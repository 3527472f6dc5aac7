"""Whole-volume prediction: gaussian sliding window, mirror TTA, mean over networks."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from trainer.training.checkpoint import load_checkpoint
from trainer.training.network import build_network
from trainer.planning.plans import Plan


def load_fold_network(checkpoint_path: str | Path, plan: Plan, device=None) -> torch.nn.Module:
    """The network of a fold checkpoint (final.pt or best.pt), in eval mode on `device`."""
    state = load_checkpoint(checkpoint_path)
    hp = state.get("hparams", {})
    net = build_network(plan, deep_supervision=hp.get("deep_supervision", True))
    net.load_state_dict(state["model"])
    return net.to(device or "cpu").eval()


def _mirror_axes(dim: int, mirror: bool) -> list[tuple[int, ...]]:
    """Every subset of the spatial axes (tensor dims 2..), the empty one first."""
    axes = list(range(2, 2 + dim))
    if not mirror:
        return [()]
    return [c for r in range(dim + 1) for c in itertools.combinations(axes, r)]


@torch.no_grad()
def predict_probabilities(networks: Sequence[torch.nn.Module], data: np.ndarray, plan: Plan, *,
                          mirror: bool = True, overlap: float = 0.5, device=None,
                          progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """(K, Z, Y, X) float32 probabilities of a (C, Z, Y, X) case; 2d plans go slice by slice.

    Softmax over classes, or one sigmoid per region for region-based plans.
    """
    if device is None:
        device = next(networks[0].parameters()).device
    device = torch.device(device)
    x = torch.from_numpy(np.array(data, dtype=np.float32))  # a writable copy of a memmap
    if plan.dim == 2:
        x = x.permute(1, 0, 2, 3)        # slices become the batch: (Z, C, Y, X)
    else:
        x = x.unsqueeze(0)               # (1, C, Z, Y, X)
    flips = _mirror_axes(plan.dim, mirror)
    total, done = len(networks) * len(flips), 0
    acc = None
    autocast = device.type == "cuda"
    for net in networks:
        net.eval()
        for axes in flips:
            inp = torch.flip(x, axes) if axes else x
            with torch.autocast("cuda", enabled=autocast):
                logits = sliding_window_inference(
                    inp, roi_size=list(plan.patch_size), sw_batch_size=4 if plan.dim == 2 else 2,
                    predictor=net, overlap=overlap, mode="gaussian", sw_device=device,
                    device="cpu")
            probs = torch.sigmoid(logits.float()) if plan.has_regions else torch.softmax(logits.float(), 1)
            if axes:
                probs = torch.flip(probs, axes)
            acc = probs if acc is None else acc + probs
            done += 1
            if progress:
                progress(done, total)
    acc /= total
    out = acc.permute(1, 0, 2, 3) if plan.dim == 2 else acc[0]
    return out.contiguous().numpy().astype(np.float32, copy=False)
