"""Reading the trainer's previews for the console: latest.json and PPM thumbnails.

Pure Python (no numpy, no imaging library): the console stays light and --help instant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from console.protocol.model import ResultsView, RunView
from contracts.layout import run_files


@dataclass(frozen=True)
class Thumb:
    width: int
    height: int
    rgb: bytes            # width * height * 3 bytes, row-major

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        i = 3 * (y * self.width + x)
        return self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]


@dataclass(frozen=True)
class PreviewItem:
    case: str
    role: str
    dice: float | None
    slice: int | None
    png: Path
    thumb: Thumb | None


def read_ppm(path: Path) -> Thumb:
    """A binary PPM (P6, maxval 255) as written by trainer.reporting.previews.write_ppm."""
    data = Path(path).read_bytes()
    fields, pos = [], 0
    while len(fields) < 4:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":                 # comment line
            pos = data.index(b"\n", pos)
            continue
        end = pos
        while end < len(data) and not data[end:end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    if fields[0] != b"P6" or fields[3] != b"255":
        raise ValueError(f"{path}: not an 8-bit binary PPM (P6)")
    w, h = int(fields[1]), int(fields[2])
    rgb = data[pos + 1: pos + 1 + 3 * w * h]
    if len(rgb) != 3 * w * h:
        raise ValueError(f"{path}: truncated PPM ({len(rgb)} of {3 * w * h} bytes)")
    return Thumb(w, h, rgb)


def previews_dir(run: RunView | None, results: ResultsView | None) -> Path | None:
    """Where a run's previews are: a fold's previews/, the predict stage's
    predictions/previews (as the snapshot names them)."""
    if run is None:
        return None
    if run.key == "predict":
        if results is None or not results.predictions_dir:
            return None
        return Path(results.predictions_dir) / "previews"
    if run.kind == "fold" and run.run_dir:
        return run_files(Path(run.run_dir))["previews"]
    return None


def load_previews(folder: Path | None) -> tuple[str, list[PreviewItem]]:
    """(heading, items) of the latest previews; ("", []) while there are none."""
    if folder is None:
        return "", []
    try:
        index = json.loads((folder / "latest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "", []
    items = []
    for it in index.get("items") or []:
        try:
            thumb = read_ppm(folder / it["thumb"]) if it.get("thumb") else None
        except (OSError, ValueError, KeyError):
            thumb = None                  # pruned or half-written: show the others
        d = it.get("dice")
        items.append(PreviewItem(case=str(it.get("case")), role=str(it.get("role")),
                                 dice=float(d) if isinstance(d, (int, float)) else None,
                                 slice=it.get("slice"), png=folder / str(it.get("png")),
                                 thumb=thumb))
    epoch = index.get("epoch")
    heading = f"epoch {epoch}" if isinstance(epoch, int) else str(index.get("source") or "")
    return heading, items
