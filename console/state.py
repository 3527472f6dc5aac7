"""console/state.json: what the controlling console knows about its runs, written atomically.

A console that starts later reads it to re-adopt live runs (pid + process start time).
"""

from __future__ import annotations

import json
from pathlib import Path

from contracts.jsonio import atomic_write_json

VERSION = 1


def load_state(path: Path) -> dict:
    """The saved state, or an empty one when the file is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {"version": VERSION, "runs": {}}
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
        return {"version": VERSION, "runs": {}}
    return data


class StateFile:
    """Writes state.json only when its content changed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._last: str | None = None

    def save(self, data: dict) -> bool:
        text = json.dumps(data, sort_keys=True)
        if text == self._last:
            return False
        atomic_write_json(self.path, data)
        self._last = text
        return True
