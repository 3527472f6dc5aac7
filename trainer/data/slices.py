"""2D slice datasets as people have them: image + mask folders of PNG/JPEG/... files.

Layout (as Pytorch-UNet uses it):

    DATASET/imgs/<stem>.png|.jpg|...      one RGB or grayscale image per case
    DATASET/masks/<stem>[_mask].png|.gif  its mask, matched by stem (a `_mask` suffix is fine)
    DATASET/test/<stem>.png               optional images to predict

A mask's class values are its pixel values: palette indices for palette images, grey
values for grayscale ones, colours for RGB masks. The distinct values over all masks,
sorted, become the classes 0, 1, 2, ... (0/255 masks: background and class 1), as
Pytorch-UNet's `mask_values` do. Every image becomes a one-slice volume (x, y, 1) with
1 mm pixels, so the 2d configuration trains on it like on any other dataset.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from contracts.errors import DatasetError
from trainer.data.cases import CaseFiles, DatasetInfo

SLICE_ENDINGS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
MASK_SUFFIXES = ("_mask", "_masks", "-mask", "_label", "_seg")


def is_slice_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SLICE_ENDINGS


def is_slice_folder(path: Path) -> bool:
    return (path / "imgs").is_dir() and (path / "masks").is_dir()


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError
    try:
        img = Image.open(path)
        img.load()
        return img
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable image ({e}); re-export it") from None


def read_image(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(x, y, 1) grayscale or (x, y, 1, C) colour float32 volume and an identity affine."""
    img = _open(Path(path))
    if img.mode in ("RGBA", "P", "CMYK", "YCbCr", "LA", "PA"):
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.float32)              # (rows=y, cols=x[, C])
    arr = np.swapaxes(arr, 0, 1)[:, :, None]             # (x, y, 1[, C]): NIfTI axis order
    return np.ascontiguousarray(arr), np.eye(4)


def read_mask_values(path: str | Path) -> np.ndarray:
    """(x, y, 1) raw mask values: palette index, grey value, or packed RGB colour."""
    img = _open(Path(path))
    if img.mode in ("RGB", "RGBA"):
        rgb = np.asarray(img.convert("RGB"), dtype=np.int64)
        arr = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    elif img.mode == "LA":
        arr = np.asarray(img, dtype=np.int64)[..., 0]
    else:                                                # P (palette index), L, 1, I;16, I
        arr = np.asarray(img).astype(np.int64)
    if arr.ndim != 2:
        raise DatasetError(f"{path}: expected a single-channel or RGB mask, got shape {arr.shape}")
    return np.ascontiguousarray(np.swapaxes(arr, 0, 1)[:, :, None])


@functools.lru_cache(maxsize=8)
def mask_values(masks_dir: str) -> tuple[int, ...]:
    """The sorted distinct raw values over every mask in the folder (once per process)."""
    found: set[int] = set()
    for p in sorted(Path(masks_dir).iterdir()):
        if is_slice_file(p) and not p.name.startswith("."):
            found |= set(np.unique(read_mask_values(p)).tolist())
    if not found:
        raise DatasetError(f"{masks_dir}: no mask images found")
    return tuple(sorted(found))


def read_mask(path: str | Path) -> np.ndarray:
    """(x, y, 1) class indices (float32, as NIfTI labels are read) of one mask."""
    path = Path(path)
    raw = read_mask_values(path)
    values = np.asarray(mask_values(str(path.parent)))
    idx = np.searchsorted(values, raw)
    return idx.astype(np.float32)


def _stem(name: str) -> str:
    return name[: -len(Path(name).suffix)] if Path(name).suffix else name


def _cases(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {_stem(p.name): p for p in sorted(folder.iterdir())
            if is_slice_file(p) and not p.name.startswith(".")}


def load_slice_folder(root: Path) -> DatasetInfo:
    """DatasetInfo of an imgs/ + masks/ folder; problems (unpaired files) are collected."""
    images, problems = _cases(root / "imgs"), []
    masks = {}
    for stem, p in _cases(root / "masks").items():
        base = stem
        for suffix in MASK_SUFFIXES:
            if stem.endswith(suffix) and stem[: -len(suffix)] in images:
                base = stem[: -len(suffix)]
                break
        if base in masks:
            problems.append(f"{p}: a second mask for image {base} ({masks[base].name}); keep one")
            continue
        masks[base] = p
    cases = []
    for stem, img in images.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", stem):
            problems.append(f"{img}: case name {stem!r} has characters other than letters, "
                            "digits and _.+-; rename the file")
        if stem not in masks:
            problems.append(f"{img}: no mask with the same name in {root / 'masks'}; add "
                            f"{stem}.png (or {stem}_mask.png) or remove the image")
        cases.append(CaseFiles(stem, [img], masks.get(stem)))
    for stem, m in masks.items():
        if stem not in images:
            problems.append(f"{m}: mask without an image in {root / 'imgs'}")
    if not cases:
        raise DatasetError(f"{root / 'imgs'}: no images ({', '.join(SLICE_ENDINGS)})")
    first = read_image(cases[0].images[0])[0]
    channels = ["R", "G", "B"] if first.ndim == 4 else ["gray"]
    values = mask_values(str(root / "masks")) if masks else (0,)
    labels = {"background": 0} | {f"value {v}": i for i, v in enumerate(values) if i > 0}
    test = [CaseFiles(stem, [p]) for stem, p in _cases(root / "test").items()]
    return DatasetInfo(root, [c for c in cases if c.label is not None], test, labels, channels,
                       ".nii.gz", None, root, problems)


def write_mask(labels: np.ndarray, values: tuple[int, ...], path: str | Path) -> None:
    """A predicted (x, y, 1) class map as a mask image in the dataset's own values, atomically.

    Classes go back to the raw mask values (0/255 stays 0/255); colour masks are written as RGB.
    """
    from PIL import Image

    from contracts.jsonio import atomic_write_file
    raw = np.asarray(values, dtype=np.int64)[np.asarray(labels)[:, :, 0].T]   # rows = y
    if raw.max(initial=0) > 255:                                             # packed colours
        rgb = np.stack([(raw >> 16) & 255, (raw >> 8) & 255, raw & 255], -1).astype(np.uint8)
        img = Image.fromarray(rgb, "RGB")
    else:
        img = Image.fromarray(raw.astype(np.uint8), "L")
    atomic_write_file(Path(path), lambda f: img.save(f, format="PNG"))
