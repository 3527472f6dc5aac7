"""Incremental reader of a growing JSONL file (metrics.jsonl, events.jsonl) by byte offset.

Reads only what was appended, buffers a partial last line, notices truncation or
replacement of the file (inode, size) and starts over, counts and skips garbage lines.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from contracts.events import ITER_MARKER

MAX_PARTIAL = 1 << 20   # a "line" longer than this without a newline is garbage, not a buffer
CHUNK = 4 << 20         # read at most this much at once: memory stays flat on a huge backlog


class Tailer:
    """`read()` returns the complete JSON-object lines appended since the last call."""

    def __init__(self, path: str | Path, collapse_iter: bool = False) -> None:
        self.path = Path(path)
        self.offset = 0
        self.inode: int | None = None
        self.partial = b""
        self.garbage = 0        # lines that were not a JSON object
        self.resets = 0         # truncations or replacements seen
        self.lines = 0
        # Only the newest of consecutive `iter` lines matters to the console (latest values),
        # so decoding the others is skipped: it is most of the cost of a long log.
        self.collapse_iter = collapse_iter

    def _restart(self) -> None:
        self.offset, self.partial = 0, b""
        self.resets += 1

    def read(self, max_bytes: int | None = None) -> list[dict]:
        """New events (all of them, or those in the next `max_bytes` bytes)."""
        if max_bytes is not None:
            return self._read(max_bytes)
        out: list[dict] = []
        while True:
            before = self.offset
            out += self._read(CHUNK)
            if self.offset - before < CHUNK:
                return out

    def read_each(self, sink) -> None:
        """Feed every new event to `sink` chunk by chunk (bounded memory on a long backlog)."""
        while True:
            before = self.offset
            for ev in self._read(CHUNK):
                sink(ev)
            if self.offset - before < CHUNK:
                return

    def _read(self, max_bytes: int) -> list[dict]:
        try:
            st = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            if self.inode is not None:          # the file went away: next one starts fresh
                self.inode = None
                self._restart()
            return []
        if self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset):
            self._restart()
        self.inode = st.st_ino
        if st.st_size == self.offset:
            return []
        try:
            with open(self.path, "rb") as f:
                if os.fstat(f.fileno()).st_ino != self.inode:   # replaced between stat and open
                    return []
                f.seek(self.offset)
                data = f.read(max_bytes)
        except OSError:
            return []
        self.offset += len(data)
        if self.partial:
            data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > MAX_PARTIAL:
            self.garbage += 1
            self.partial = b""
        self.lines += len(lines)
        return self._decode(lines)

    def _decode(self, lines: list[bytes]) -> list[dict]:
        out: list[dict] = []
        loads = json.loads
        n = len(lines)
        for i, raw in enumerate(lines):
            if (self.collapse_iter and i + 1 < n and ITER_MARKER in raw and ITER_MARKER in lines[i + 1]):
                continue
            if not raw.strip():
                continue
            try:
                obj = loads(raw)
            except ValueError:
                self.garbage += 1
                continue
            if isinstance(obj, dict):
                out.append(obj)
            else:
                self.garbage += 1
        return out
