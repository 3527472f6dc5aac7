"""One controlling console per experiment: a non-blocking file lock on console/lock."""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock, Timeout

from contracts.errors import ConfigError


class ConsoleBusy(ConfigError):
    """Another console controls this experiment."""


class ConsoleLock:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.path))
        self._pid_file = self.path.with_name("lock.pid")

    def holder(self) -> str:
        return self.holder_of(self.path)

    @staticmethod
    def holder_of(path: Path) -> str:
        """The pid the holder wrote beside the lock ('?' when unknown)."""
        try:
            return Path(path).with_name("lock.pid").read_text().strip() or "?"
        except OSError:
            return "?"

    def acquire(self) -> None:
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise ConsoleBusy(
                f"another foldwatch console (pid {self.holder()}) controls this experiment "
                f"({self.path}). Watch it with --read-only, or use `foldwatch status` / "
                f"`foldwatch stop`.") from None
        try:
            self._pid_file.write_text(f"{os.getpid()}\n")
        except OSError:
            pass            # a full disk: the lock itself holds; only the holder's pid is lost

    def is_held_elsewhere(self) -> bool:
        """True when some other process holds the lock (probes without keeping it)."""
        if self._lock.is_locked:
            return False
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return True
        self._lock.release()
        return False

    def release(self) -> None:
        if self._lock.is_locked:
            try:
                self._pid_file.unlink()
            except OSError:
                pass
            self._lock.release(force=True)
