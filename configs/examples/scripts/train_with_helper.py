"""A training script that reports to foldwatch with the tiny helper (`import foldwatch`).

A per-pixel logistic-regression segmenter on synthetic images, in numpy: small enough to
show the helper, real enough to learn (its validation Dice rises). Run alone it works the
same; under foldwatch (configs/examples/command-helper.yaml) every `foldwatch.log` call
becomes an `epoch` event in the run's metrics.jsonl.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

import foldwatch


def data(n: int, size: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.6, (n, size, size))
    y = np.zeros((n, size, size))
    for i in range(n):
        r, c = rng.integers(2, size - 8, 2)
        y[i, r:r + 6, c:c + 6] = 1
        x[i, r:r + 6, c:c + 6] += 1.2
    return x, y


def features(x):
    """Each pixel and its 4 neighbours' mean: a 3-feature linear model."""
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
    neigh = (pad[:, :-2, 1:-1] + pad[:, 2:, 1:-1] + pad[:, 1:-1, :-2] + pad[:, 1:-1, 2:]) / 4
    return np.stack([x, neigh, np.ones_like(x)], -1).reshape(-1, 3)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.5)
    p.add_argument("--out", type=Path, default=Path("helper_run"))
    p.add_argument("--resume", type=Path)
    args = p.parse_args()
    x, y = data(30, 24, seed=1)
    val = np.arange(len(x)) % 5 == args.fold
    ft, yt = features(x[~val]), y[~val].reshape(-1)
    fv, yv = features(x[val]), y[val].reshape(-1)
    w, start = np.zeros(3), 0
    if args.resume:
        state = np.load(args.resume)
        w, start = state["w"], int(state["epoch"])
    args.out.mkdir(parents=True, exist_ok=True)
    for epoch in range(start, args.epochs):
        lr = args.lr * (1 - epoch / args.epochs) ** 0.9
        prob = 1 / (1 + np.exp(-ft @ w))
        loss = -np.mean(yt * np.log(prob + 1e-9) + (1 - yt) * np.log(1 - prob + 1e-9))
        w -= lr * ft.T @ (prob - yt) / len(yt) * 10
        pv = 1 / (1 + np.exp(-fv @ w))
        val_loss = -np.mean(yv * np.log(pv + 1e-9) + (1 - yv) * np.log(1 - pv + 1e-9))
        pred = pv > 0.5
        dice = 2 * (pred & (yv == 1)).sum() / max(1, pred.sum() + (yv == 1).sum())
        ckpt = args.out / f"fold{args.fold}_latest.npz"
        tmp = args.out / f".fold{args.fold}_latest.tmp.npz"
        np.savez(tmp, w=w, epoch=epoch + 1)
        os.replace(tmp, ckpt)
        foldwatch.checkpoint_saved(str(ckpt), epoch=epoch + 1)   # checkpoint first, then epoch
        foldwatch.log(epoch=epoch, loss=loss, val_loss=val_loss, dice=dice, lr=lr)
        print(f"epoch {epoch}: loss {loss:.4f} dice {dice:.3f}", flush=True)


if __name__ == "__main__":
    main()
