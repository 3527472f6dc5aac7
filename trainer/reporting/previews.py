"""Prediction previews: one image slice with ground-truth and prediction outlines.

Drawn pixel-exact with numpy and Pillow (no anti-aliasing), so the colours are exactly
GT_RGB / PRED_RGB / BOTH_RGB where the outlines are: a person sees them at a glance and a
test can find them. Each preview also gets a small PPM thumbnail that the console decodes
without any imaging library, for its half-block rendering in the terminal.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.jsonio import atomic_write_file, atomic_write_json

GT_RGB = (0, 230, 0)         # ground-truth outline
PRED_RGB = (255, 40, 40)     # prediction outline
BOTH_RGB = (255, 230, 0)     # where both outlines coincide
LEGEND_H = 44                # pixels of legend strip under the image
THUMB_MAX = 96               # thumbnail's longer side, in pixels
KEEP_EVERY = 50              # pruning keeps every 50th epoch's previews and the latest few
KEEP_LATEST = 3


@dataclass
class Preview:
    """One case's slice, ready to draw (label maps hold class indices, 0 = background)."""
    case: str
    role: str                  # "fixed", "worst" or "test"
    image: np.ndarray          # (H, W) float
    truth: np.ndarray | None   # (H, W) int, None for unlabelled test images
    pred: np.ndarray           # (H, W) int
    dice: float | None
    slice_index: int


def best_slice(labels: np.ndarray) -> int:
    """Index along axis 0 of the slice with the most foreground (the middle if there is none)."""
    counts = (labels.reshape(labels.shape[0], -1) > 0).sum(1)
    return int(counts.argmax()) if counts.max() > 0 else labels.shape[0] // 2


def dice(pred: np.ndarray, truth: np.ndarray) -> float | None:
    """Foreground Dice (all classes together); None when both are empty."""
    p, t = pred > 0, truth > 0
    denom = int(p.sum() + t.sum())
    return None if denom == 0 else 2.0 * int((p & t).sum()) / denom


def outline(labels: np.ndarray) -> np.ndarray:
    """Foreground pixels with a 4-neighbour of another label (the image border counts)."""
    lab = np.pad(labels, 1, mode="constant", constant_values=-1)
    c = lab[1:-1, 1:-1]
    edge = ((c != lab[:-2, 1:-1]) | (c != lab[2:, 1:-1]) | (c != lab[1:-1, :-2])
            | (c != lab[1:-1, 2:]))
    return edge & (c > 0)


def _gray(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 with the 0.5-99.5 percentile window (robust to CT outliers)."""
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, [0.5, 99.5]) if img.size else (0.0, 1.0)
    scaled = (img - lo) / max(float(hi - lo), 1e-6)
    return (np.clip(scaled, 0, 1) * 255).astype(np.uint8)


def _resize_nearest(a: np.ndarray, h: int, w: int) -> np.ndarray:
    rows = (np.arange(h) * a.shape[0] // h).clip(0, a.shape[0] - 1)
    cols = (np.arange(w) * a.shape[1] // w).clip(0, a.shape[1] - 1)
    return a[rows][:, cols]


def _thicken(edge: np.ndarray, inside: np.ndarray, times: int) -> np.ndarray:
    """Grow an outline `times` pixels into its own mask (it stays inside the structure)."""
    for _ in range(times):
        grown = edge.copy()
        grown[1:] |= edge[:-1]
        grown[:-1] |= edge[1:]
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        edge = grown & inside
    return edge


def overlay(p: Preview, height: int, width: int, thickness: int = 1) -> np.ndarray:
    """(height, width, 3) uint8: the slice in grey with the outlines painted on."""
    rgb = np.repeat(_resize_nearest(_gray(p.image), height, width)[..., None], 3, axis=2)
    pred_map = _resize_nearest(p.pred, height, width)
    pred = _thicken(outline(pred_map), pred_map > 0, thickness - 1)
    truth = np.zeros_like(pred)
    if p.truth is not None:
        truth_map = _resize_nearest(p.truth, height, width)
        truth = _thicken(outline(truth_map), truth_map > 0, thickness - 1)
    rgb[truth & ~pred] = GT_RGB
    rgb[pred & ~truth] = PRED_RGB
    rgb[pred & truth] = BOTH_RGB
    return rgb


def scale_for(shape: tuple[int, int], target: int = 384) -> int:
    """Integer upscale so the longer side is about `target` pixels (at least 1)."""
    return max(1, target // max(shape))


def render_png(p: Preview, title: str, out: Path) -> Path:
    """The full-size preview: overlay at an integer scale, legend strip with the Dice."""
    from PIL import Image, ImageDraw
    s = scale_for(p.image.shape)
    h, w = p.image.shape[0] * s, p.image.shape[1] * s
    body = overlay(p, h, w, thickness=max(1, s // 2))
    width = max(w, 360)
    canvas = Image.new("RGB", (width, h + LEGEND_H), (0, 0, 0))
    canvas.paste(Image.fromarray(body, "RGB"), (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = h + 4
    draw.text((4, y), title, fill=(255, 255, 255))
    x = 4
    entries = [("ground truth", GT_RGB), ("prediction", PRED_RGB), ("both", BOTH_RGB)]
    if p.truth is None:
        entries = [("prediction", PRED_RGB)]
    for label, colour in entries:
        draw.rectangle([x, y + 20, x + 12, y + 32], fill=colour)
        draw.text((x + 16, y + 20), label, fill=(255, 255, 255))
        x += 16 + 8 * len(label) + 12
    atomic_write_file(out, lambda f: canvas.save(f, format="PNG"))
    return out


def thumb_size(shape: tuple[int, int], longest: int = THUMB_MAX) -> tuple[int, int]:
    f = min(1.0, longest / max(shape))
    return max(2, round(shape[0] * f)), max(2, round(shape[1] * f))


def write_ppm(rgb: np.ndarray, out: Path) -> Path:
    """Binary PPM (P6): a header and raw RGB bytes, decodable with a few lines of Python."""
    h, w = rgb.shape[:2]
    data = f"P6\n{w} {h}\n255\n".encode() + np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    atomic_write_file(out, lambda f: f.write(data))
    return out


def title_of(p: Preview, epoch: int | None) -> str:
    d = "n/a" if p.dice is None else f"{p.dice:.3f}"
    where = f"epoch {epoch}  " if epoch is not None else ""
    return f"{where}{p.case} ({p.role})  slice {p.slice_index}  Dice {d}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_previews(previews: list[Preview], folder: Path, epoch: int | None,
                   source: str, prefix: str = "") -> dict:
    """PNG + thumbnail per preview, then latest.json naming them (written last: a reader
    never sees an index whose files are missing). Test-set previews (no epoch, no prefix)
    add to the index; the others replace it."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for p in previews:
        stem = (f"epoch_{epoch:04d}_{_safe(p.case)}" if epoch is not None
                else prefix + _safe(p.case))
        png = render_png(p, title_of(p, epoch), folder / f"{stem}.png")
        th, tw = thumb_size(p.image.shape)
        thumb = write_ppm(overlay(p, th, tw), folder / f".thumbs/{stem}.ppm")
        items.append({"case": p.case, "role": p.role, "dice": p.dice, "slice": p.slice_index,
                      "png": png.name, "thumb": str(thumb.relative_to(folder))})
    if epoch is not None:
        prune(folder, epoch)
    elif not prefix:           # test set: cases kept from an earlier run stay in the index
        done = {i["case"] for i in items}
        earlier = (read_index(folder) or {}).get("items") or []
        items = [i for i in earlier if i.get("case") not in done] + items
    index = {"epoch": epoch, "source": source, "items": items}
    atomic_write_json(folder / "latest.json", index)
    return index


def prune(folder: Path, epoch: int) -> None:
    """Drop our own older epoch previews except every KEEP_EVERY-th and the latest few."""
    for f in list(folder.glob("epoch_*.png")) + list(folder.glob(".thumbs/epoch_*.ppm")):
        m = re.match(r"epoch_(\d+)_", f.name)
        if m:
            e = int(m.group(1))
            if e % KEEP_EVERY and e <= epoch - KEEP_LATEST:
                f.unlink(missing_ok=True)


def read_index(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "latest.json").read_text())
    except (OSError, ValueError):
        return None


def volume_preview(case: str, image: np.ndarray, pred: np.ndarray,
                   truth: np.ndarray | None) -> Preview:
    """A test-set preview from original-space volumes (nibabel order x, y, z): the axial
    slice with the most foreground of the reference (or of the prediction without one)."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 4:                       # several channels: show the first
        img = img[..., 0]
    img, pred = img.transpose(2, 1, 0), np.asarray(pred).transpose(2, 1, 0)
    ref = None if truth is None else np.asarray(truth).transpose(2, 1, 0)
    z = best_slice(ref if ref is not None and (ref > 0).any() else pred)
    return Preview(case=case, role="test", image=img[z], pred=pred[z].astype(np.int16),
                   truth=None if ref is None else ref[z].astype(np.int16),
                   dice=None if ref is None else dice(pred, ref), slice_index=z)
