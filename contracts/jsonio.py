"""Strict JSON and atomic writes (ARCHITECTURE.md sections 2 and 3).

Strict JSON: NaN and +-Infinity become null, so any JSON reader can load the files.
Atomic: temp file in the same directory, flush + fsync, os.replace, fsync the directory,
so a kill at any instant leaves either the old or the new version.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator


def _sanitize(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, Path):
        return str(obj)
    # numpy scalars and arrays without importing numpy
    if hasattr(obj, "tolist"):
        return _sanitize(obj.tolist())
    if hasattr(obj, "item"):
        return _sanitize(obj.item())
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")


def dumps(obj: Any, indent: int | None = None) -> str:
    """Strict JSON text: NaN/Infinity as null, numpy values as plain numbers."""
    return json.dumps(_sanitize(obj), indent=indent, allow_nan=False, ensure_ascii=False)


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_file(path: str | Path, write: Callable[[BinaryIO], None]) -> None:
    """Replace `path` with what `write(f)` writes, so a crash leaves the old or the new file.

    Serves JSON, checkpoints, .npy and .npz alike. The temp file is `.<name>.<random>.tmp`
    in the same folder, so no reader's `*<suffix>` pattern mistakes it for a result.
    """
    def to_file(tmp: Path) -> None:
        with open(tmp, "xb") as f:
            write(f)

    path = Path(path)
    _replace(path, path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"), to_file)


def atomic_write_named(path: str | Path, write: Callable[[Path], None]) -> None:
    """Like atomic_write_file for writers that need a file name and choose the format by its
    extension (nibabel's .nii.gz): the temp name is `.<random>.<name>`."""
    path = Path(path)
    _replace(path, path.with_name(f".{uuid.uuid4().hex[:8]}.{path.name}"), write)


def _replace(path: Path, tmp: Path, write: Callable[[Path], None]) -> None:
    """write(tmp), fsync it, os.replace it onto path, fsync the folder; no temp left on error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    fsync_dir(path.parent)


def _unlink(p) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace `path` with `data` atomically."""
    atomic_write_file(path, lambda f: f.write(data))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Write strict JSON atomically."""
    atomic_write_bytes(path, (dumps(obj, indent=indent) + "\n").encode("utf-8"))


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class EventWriter:
    """Appends one strict-JSON event per line and flushes it (metrics.jsonl, events.jsonl)."""

    MAX_LINE = 64 * 1024

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, event: str, **fields: Any) -> dict:
        record = {"t": time.time(), "event": event, **fields}
        line = dumps(record)
        if len(line.encode("utf-8")) >= self.MAX_LINE:
            raise ValueError(f"event {event!r} is {len(line)} bytes; lines must stay under 64 KiB")
        self._f.write(line + "\n")
        self._f.flush()
        return record

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_jsonl(path: str | Path) -> Iterator[dict]:
    """Every complete, valid JSON object line of a file (garbage and a partial tail skipped)."""
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                yield obj
