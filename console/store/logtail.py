"""Follow a text log from byte offsets: only the tail window at first, then what is appended;
a truncated or replaced file starts over. Never reads a large log whole."""

from __future__ import annotations

import os
from pathlib import Path

WINDOW = 256 * 1024       # bytes shown from the end of a log when it is opened


class TextTail:
    def __init__(self, path: str | Path, window: int = WINDOW) -> None:
        self.path = Path(path)
        self.window = window
        self.offset = 0
        self.inode: int | None = None
        self.skipped = 0               # bytes before the window, not shown
        self._partial = b""

    def read(self) -> tuple[list[str], bool]:
        """(new complete lines, True when the file was replaced or truncated: start over)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return [], False
        reset = False
        if self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset):
            reset = True
            self.offset, self._partial, self.skipped = 0, b"", 0
        first = self.inode is None or reset
        self.inode = st.st_ino
        cut = first and st.st_size > self.window
        if cut:
            self.offset = self.skipped = st.st_size - self.window
        if st.st_size == self.offset:
            return [], reset
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(max(0, st.st_size - self.offset))
        self.offset += len(data)
        data = self._partial + data
        if cut:                            # the window starts mid-line: drop that piece
            data = data.split(b"\n", 1)[1] if b"\n" in data else b""
        *lines, self._partial = data.split(b"\n")
        return [ln.decode("utf-8", "replace").rstrip("\r") for ln in lines], reset
