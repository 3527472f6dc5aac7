"""Read the preprocessed cache of one configuration (format: docs/ARCHITECTURE.md + BRIEF).

`<case>_data.npy` float32 (C, Z, Y, X), `<case>_seg.npy` uint8 (int16 above 255 labels) (Z, Y, X) when labelled,
`<case>.json` properties (spacing, crop box, original geometry, class_locations).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def list_cases(cfg_dir: str | Path) -> list[str]:
    """Case ids with cached arrays, sorted."""
    return sorted(p.name[:-len("_data.npy")] for p in Path(cfg_dir).glob("*_data.npy")
                  if not p.name.startswith("."))   # never a temp file of an interrupted write


def load_case(cfg_dir: str | Path, case: str, mmap: bool = True):
    """(data, seg or None, props) of one case; memory-mapped by default."""
    d = Path(cfg_dir)
    mode = "r" if mmap else None
    data = np.load(d / f"{case}_data.npy", mmap_mode=mode)
    seg_path = d / f"{case}_seg.npy"
    seg = np.load(seg_path, mmap_mode=mode) if seg_path.exists() else None
    props = json.loads((d / f"{case}.json").read_text())
    return data, seg, props
