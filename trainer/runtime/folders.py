"""Result folders and disks: create a folder with a clear error, free space, "disk full"."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from contracts.errors import ConfigError, NoSpaceError

NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# contracts.jsonio's temp names: `.<name>.<8 hex>.tmp` and `.<8 hex>.<name>`.
TEMP_NAME = re.compile(r"^\.(.+\.[0-9a-f]{8}\.tmp|[0-9a-f]{8}\..+)$")


def no_space_cause(exc: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT OSError behind `exc` (torch and others wrap it), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def is_no_space(exc: BaseException) -> bool:
    """Disk full or quota exceeded (also when torch wrapped the OSError in a RuntimeError)."""
    return no_space_cause(exc) is not None


def free_bytes(path: str | Path) -> int | None:
    """Bytes an unprivileged writer may still use on the disk holding `path` (None: unknown)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _blocker(path: Path) -> Path | None:
    """The first part of `path` that exists but is not a folder (a file in the way)."""
    for p in [*reversed(path.parents), path]:
        if p.exists() and not p.is_dir():
            return p
        if not p.exists():
            return None
    return None


def make_folder(path: str | Path) -> Path:
    """mkdir -p, or ConfigError/NoSpaceError saying why the folder cannot be created."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        return path
    except OSError as e:
        raise folder_error(path, e, "create") from None


def folder_error(path: Path, e: OSError, doing: str = "write in") -> ConfigError | NoSpaceError:
    """The clear error for an OSError met while creating or writing in a results folder."""
    if e.errno in NO_SPACE_ERRNOS:
        return NoSpaceError(path, free_bytes(path), what="a new file")
    blocker = _blocker(path)
    if blocker is not None:
        why = f"{blocker} is a file, not a folder; move it away"
    elif e.errno == errno.EROFS:
        why = "the file system is read-only"
    elif e.errno in (errno.EACCES, errno.EPERM):
        why = f"permission denied ({e.filename or path})"
    else:
        why = e.strerror or str(e)
    return ConfigError(f"{path}: cannot {doing} the results folder: {why}. Choose a writable "
                       "place with `results:` in the experiment file")


def remove_stale_temps(folder: str | Path) -> int:
    """Delete temp files that killed writers left under `folder` (never valid results).

    Only for a folder whose run lock the caller holds: no live writer can own them then.
    """
    removed = 0
    for p in Path(folder).rglob(".*"):
        if p.is_file() and TEMP_NAME.match(p.name):
            try:
                p.unlink()
                removed += 1
            except OSError:
                pass
    return removed
