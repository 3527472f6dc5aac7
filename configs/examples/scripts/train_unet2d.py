"""A Pytorch-UNet-style 2D training script that knows nothing about foldwatch.

    python train_unet2d.py --epochs 50 --batch-size 8 --amp --load checkpoints/checkpoint_epoch10.pth

Like milesial/Pytorch-UNet's train.py: images and masks from --images/--masks (PNG pairs with
the same stem) or, without them, a small synthetic set; one line per epoch on stdout;
`checkpoints/checkpoint_epoch{N}.pth` after every epoch; `--load` continues from one.
foldwatch supervises it with `trainer: command` and a stdout pattern
(configs/examples/command-pattern.yaml).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def synthetic(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bright squares on noise, and their masks."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.5, (n, 1, size, size)).astype(np.float32)
    y = np.zeros((n, size, size), np.int64)
    for i in range(n):
        s = rng.integers(size // 6, size // 3)
        r, c = rng.integers(0, size - s, 2)
        y[i, r:r + s, c:c + s] = 1
        x[i, 0, r:r + s, c:c + s] += 1.5
    return x, y


def png_pairs(images: Path, masks: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image
    xs, ys = [], []
    for img in sorted(images.glob("*.png")):
        mask = masks / img.name
        if not mask.exists():
            raise SystemExit(f"error: no mask {mask} for image {img}")
        xs.append(np.asarray(Image.open(img).convert("L").resize((size, size)), np.float32)[None] / 255)
        ys.append((np.asarray(Image.open(mask).convert("L").resize((size, size))) > 127).astype(np.int64))
    if not xs:
        raise SystemExit(f"error: no *.png images in {images}")
    return np.stack(xs), np.stack(ys)


class UNet(nn.Module):
    """Two levels of the usual U-Net: conv blocks, max-pool down, transposed conv up."""

    def __init__(self, ch: int = 8, classes: int = 2) -> None:
        super().__init__()
        block = lambda i, o: nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o),
                                           nn.ReLU(inplace=True), nn.Conv2d(o, o, 3, padding=1),
                                           nn.BatchNorm2d(o), nn.ReLU(inplace=True))
        self.inc, self.down = block(1, ch), block(ch, ch * 2)
        self.up = nn.ConvTranspose2d(ch * 2, ch, 2, stride=2)
        self.dec, self.outc = block(ch * 2, ch), nn.Conv2d(ch, classes, 1)

    def forward(self, x):
        a = self.inc(x)
        b = self.down(F.max_pool2d(a, 2))
        return self.outc(self.dec(torch.cat([a, self.up(b)], 1)))


def dice(logits: torch.Tensor, y: torch.Tensor) -> float:
    pred = logits.argmax(1)
    inter = ((pred == 1) & (y == 1)).sum().item()
    total = (pred == 1).sum().item() + (y == 1).sum().item()
    return 1.0 if total == 0 else 2 * inter / total


def main() -> None:
    p = argparse.ArgumentParser(description="Train a small 2D U-Net")
    p.add_argument("--epochs", "-e", type=int, default=5)
    p.add_argument("--batch-size", "-b", type=int, default=8)
    p.add_argument("--learning-rate", "-l", type=float, default=1e-3)
    p.add_argument("--load", "-f", type=str, default=None, help="continue from this checkpoint")
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--fold", type=int, default=0, help="which fifth of the data validates")
    p.add_argument("--images", type=Path)
    p.add_argument("--masks", type=Path)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--cases", type=int, default=40)
    p.add_argument("--checkpoint-dir", type=Path, default=Path("checkpoints"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    torch.manual_seed(args.fold)
    torch.set_num_threads(int(os.environ.get("FOLDWATCH_CPU_THREADS") or 1))
    x, y = (png_pairs(args.images, args.masks, args.size) if args.images
            else synthetic(args.cases, args.size, seed=0))
    val = np.arange(len(x)) % 5 == args.fold
    xt, yt = torch.from_numpy(x[~val]), torch.from_numpy(y[~val])
    xv, yv = torch.from_numpy(x[val]), torch.from_numpy(y[val])
    device = torch.device(args.device)
    model = UNet().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    amp = args.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    start = 0
    if args.load:
        state = torch.load(args.load, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = state["epoch"]
        print(f"Model loaded from {args.load} (epoch {start})", flush=True)
    args.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    for epoch in range(start + 1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(xt))
        losses = []
        for i in range(0, len(xt), args.batch_size):
            idx = order[i:i + args.batch_size]
            xb, yb = xt[idx].to(device), yt[idx].to(device)
            with torch.autocast(device.type, enabled=amp):
                loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(loss.item())
        sched.step()
        model.eval()
        with torch.no_grad():
            logits = model(xv.to(device))
            val_loss = F.cross_entropy(logits, yv.to(device)).item()
            val_dice = dice(logits, yv.to(device))
        path = args.checkpoint_dir / f"checkpoint_epoch{epoch}.pth"
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "epoch": epoch}, tmp)
        os.replace(tmp, path)           # a kill never leaves a torn checkpoint behind
        print(f"Epoch {epoch}/{args.epochs} train_loss={np.mean(losses):.4f} "
              f"val_loss={val_loss:.4f} val_dice={val_dice:.4f} lr={sched.get_last_lr()[0]:.6f}",
              flush=True)
        print(f"Checkpoint {epoch} saved!", flush=True)


if __name__ == "__main__":
    main()
