"""`<run dir>/origin.json`: a fold trained on another machine and brought in by `foldwatch
import` (docs/transfer.md). Written by the import inside the fold folder before the folder is
put in place, so the folder and its origin arrive together; the engine reads it to show
"imported from HOST, DATE" and to count the fold completed.

    {"version": 1, "key": "2d/3", "trainer": "foldwatch",
     "trained_on": "bob-ws", "completed": 1732280000.0,   # where and when its training ended
     "packed_on": "bob-ws", "packed": 1732280100.0,       # null for an nnU-Net folder or zip
     "imported_on": "alice-ws", "imported": 1732280200.0,
     "source": {"kind": "foldwatch-archive" | "nnunet-folder" | "nnunet-zip",
                "path": "...", "sha256": "..." | null, "size": 123},
     "digests": {"plan": "sha256:...", "splits": ..., "fingerprint": ...},
     "replaced": "fold_3.old-20261122-101500" | null,     # the folder moved aside (--replace)
     "run": {...}}                                        # the archive manifest's entry
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from contracts.layout import ORIGIN_FILE

VERSION = 1
SOURCE_KINDS = ("foldwatch-archive", "nnunet-folder", "nnunet-zip")


def read_origin(run_dir: str | Path) -> dict | None:
    """The fold's origin record, or None (not imported, or unreadable)."""
    try:
        rec = json.loads((Path(run_dir) / ORIGIN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def _when(rec: dict) -> float | None:
    for key in ("completed", "packed", "imported"):
        t = rec.get(key)
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            return float(t)
    return None


def origin_label(rec: dict | None) -> str | None:
    """"HOST, DATE" for the views ("imported from bob-ws, 2026-11-22 14:03"): where the fold
    was trained and when its training ended there (else when it was packed or imported)."""
    if not rec:
        return None
    host = rec.get("trained_on") or rec.get("packed_on") or "another machine"
    t = _when(rec)
    return f"{host}, {time.strftime('%Y-%m-%d %H:%M', time.localtime(t))}" if t else str(host)
