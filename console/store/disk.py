"""Disk space, as the console shows it: free space of the results disk, and the errors that
mean "the disk is full" (a condition to wait out, never a crash)."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def is_no_space(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in NO_SPACE_ERRNOS


def usage(path: Path) -> tuple[int, int] | None:
    """(free, total) bytes of the file system holding `path` (or its nearest existing parent)."""
    p = Path(path)
    while True:
        try:
            u = shutil.disk_usage(p)
            return u.free, u.total
        except OSError:
            if p.parent == p:
                return None
            p = p.parent


def mb(n: int | None) -> str:
    if n is None:
        return "? MB"
    return f"{n / 2**20:.1f} MB" if n < 10 * 2**20 else f"{n / 2**20:.0f} MB"


def free_text(path: Path) -> str:
    u = usage(path)
    return f"{mb(u[0] if u else None)} free on {path}"


def retry_threshold(path: Path) -> int:
    """Free bytes needed before a run that hit a full disk is tried again: what is free now
    plus an eighth of the disk (at most 256 MiB, at least 4 KiB)."""
    u = usage(path)
    if u is None:
        return 0
    free, total = u
    return free + max(4096, min(256 * 2**20, total // 8))
