"""Reading a fold archive once, as a stream: the manifest and the context first (enough to
refuse a fold from another plan before copying anything), then the payload.

Every import source (this archive format, nnU-Net's fold folders and export zips in
console.transfer.nnunet) offers the same: `manifest`, `context` and `payload()`, yielding
(member name, size, mtime, file object) in order; console.transfer.staging copies and checks.
"""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from pathlib import Path
from typing import BinaryIO, Iterator

from contracts.errors import ConfigError

from console.transfer.manifest import (CONTEXT, MANIFEST, MANIFEST_SHA, Manifest,
                                       check_member_name)

MAX_CONTEXT = 256 << 20        # a context member is JSON read into memory: plans, fingerprint


class Damaged(ConfigError):
    """The archive cannot be read to its end or does not match its manifest."""


def damaged(where: str, why: str) -> Damaged:
    return Damaged(f"{where}: {why}. The archive is damaged or incomplete (cut short while "
                   "copying, or a disk error); copy it again from the machine that packed it. "
                   "Nothing was changed here")


class _HashingRaw:
    """The archive file as tarfile reads it, hashed on the way (the archive's own digest)."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.h, self.size = f, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.h.update(data)
        self.size += len(data)
        return data

    def finish(self) -> str:
        while chunk := self.f.read(1 << 20):      # the end-of-archive blocks tarfile skips
            self.h.update(chunk)
            self.size += len(chunk)
        return self.h.hexdigest()


class FoldArchive:
    kind = "foldwatch-archive"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self._file = open(path, "rb")
        self._raw = _HashingRaw(self._file)
        self.sha256: str | None = None
        try:
            self._tar = tarfile.open(fileobj=self._raw, mode="r|")
        except (tarfile.TarError, EOFError, OSError) as e:
            self._file.close()
            raise ConfigError(f"{path}: not a foldwatch fold archive (not a tar file: {e}); "
                              "`foldwatch pack` writes them") from None
        self._pending: tarfile.TarInfo | None = None
        self.manifest, self.manifest_sha, self.context = self._head()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "FoldArchive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _next(self) -> tarfile.TarInfo | None:
        try:
            return self._tar.next()
        except (tarfile.TarError, EOFError, OSError) as e:
            raise damaged(self.where, f"it cannot be read past a member ({e})") from None

    def _read(self, ti: tarfile.TarInfo, limit: int | None = None) -> bytes:
        if not ti.isreg():
            raise damaged(self.where, f"member {ti.name!r} is not a regular file")
        if limit is not None and ti.size > limit:
            raise damaged(self.where, f"member {ti.name!r} is {ti.size} bytes; too large")
        try:
            return self._tar.extractfile(ti).read()
        except (tarfile.TarError, EOFError, OSError) as e:
            raise damaged(self.where, f"it ends inside {ti.name} ({e})") from None

    def _head(self):
        first = self._next()
        if first is None or first.name != MANIFEST:
            raise ConfigError(f"{self.where}: not a foldwatch fold archive (its first member "
                              f"is {first.name if first else 'missing'!r}, not {MANIFEST})")
        data = self._read(first, MAX_CONTEXT)
        second = self._next()
        if second is None or second.name != MANIFEST_SHA:
            raise damaged(self.where, f"{MANIFEST_SHA} does not follow the manifest")
        said = self._read(second, 200).decode("ascii", "replace").strip()
        sha = Manifest.sha(data)
        if said != sha:
            raise damaged(self.where, "its manifest does not match its checksum (sha256 "
                          f"{sha[:12]}…, recorded {said[:12]}…)")
        manifest = Manifest.parse(data, self.where)
        expected = {f.name: f for f in manifest.files}
        context: dict[str, bytes] = {}
        while True:
            ti = self._next()
            if ti is None or not ti.name.startswith(CONTEXT):
                self._pending = ti
                break
            entry = expected.get(ti.name)
            if entry is None:
                raise damaged(self.where, f"member {ti.name!r} is not in its manifest")
            body = self._read(ti, MAX_CONTEXT)
            if len(body) != entry.size or hashlib.sha256(body).hexdigest() != entry.sha256:
                raise damaged(self.where, f"{ti.name}: its checksum differs from the manifest's")
            context[ti.name] = body
        lacking = [n for n in expected if n.startswith(CONTEXT) and n not in context]
        if lacking:
            raise damaged(self.where, f"it lacks {', '.join(lacking)}")
        return manifest, sha, context

    def payload(self) -> Iterator[tuple[str, int, float, BinaryIO]]:
        """The members after the context, each readable until the next is asked for."""
        ti, self._pending = self._pending, None
        while ti is not None:
            check_member_name(ti.name, self.where)
            if not ti.isreg():
                raise damaged(self.where, f"member {ti.name!r} is not a regular file")
            yield ti.name, ti.size, float(ti.mtime), Guarded(self._tar.extractfile(ti),
                                                             self.where, ti.name)
            ti = self._next()
        self.sha256 = self._raw.finish()


class Guarded:
    """A member's data; a read that fails (the archive ends early, a zip member's CRC-32
    differs) says so for people."""

    def __init__(self, f, where: str, name: str) -> None:
        self.f, self.where, self.name = f, where, name

    def read(self, n: int = -1) -> bytes:
        try:
            return self.f.read(n)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
            raise damaged(self.where, f"{self.name} cannot be read to its end ({e})") from None
