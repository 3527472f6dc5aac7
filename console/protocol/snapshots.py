"""snapshot.json: what the supervisor shows every client, rewritten on every tick.

{"version": 1, "supervisor": {pid, create_time, host, started, heartbeat, tick_s, ended,
end_reason}, "snapshot": <console.protocol.model.Snapshot as JSON>}. Replaced atomically
(a temp file renamed over it) but not fsync'd: it is a view, rebuilt twice a second, and
the state that matters is in state.json. Readers re-read it only when it changed.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from console.protocol.codec import decode, encode
from console.protocol.model import Snapshot
from contracts.jsonio import dumps

VERSION = 1


def write_snapshot(path: Path, snap: Snapshot, supervisor: dict) -> None:
    """Replace `path` with this snapshot (OSError on a full disk: the caller says so)."""
    text = dumps({"version": VERSION, "supervisor": supervisor, "snapshot": encode(snap)})
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@dataclass
class Read:
    snapshot: Snapshot | None        # None: no snapshot yet, or unreadable (`problem` says)
    supervisor: dict
    written: float | None            # the file's modification time
    problem: str | None = None


class SnapshotReader:
    """A client's view of snapshot.json, decoded again only when the file changed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._key: tuple | None = None
        self._last = Read(None, {}, None)

    def read(self) -> Read:
        try:
            st = os.stat(self.path)
        except OSError:
            self._key, self._last = None, Read(None, {}, None)
            return self._last
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key == self._key:
            return self._last
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("snapshot"), dict):
                raise ValueError("not a snapshot object")
            snap = decode(Snapshot, data["snapshot"])
            sup = data.get("supervisor") if isinstance(data.get("supervisor"), dict) else {}
            self._last = Read(snap, sup, st.st_mtime)
        except (OSError, ValueError, TypeError) as e:
            # replaced between stat and read, or written by another version: keep the last
            self._last = Read(self._last.snapshot, self._last.supervisor, st.st_mtime,
                              f"{self.path}: {e}")
        self._key = key
        return self._last
