"""Copying an import's files into staging folders on the destinations' own file systems, every
byte checked on the way, so that putting a fold in place is a rename (docs/transfer.md).

Staging folders: `results/<exp>/console/imports/<id>/` for foldwatch's run folders and the
context, and `<nnUNet_results>/<dataset>/.foldwatch-import-<id>/` for nnU-Net's fold folders
(trainer: nnunetv2; often another disk). `<id>/stage.json`, written first, names them all, so a
stage left by a crash is found and removed by the next import.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from contracts import exitcodes
from contracts.errors import UserError
from contracts.jsonio import atomic_write_json, fsync_dir, read_json

from console.store import disk
from console.transfer.archive import damaged
from console.transfer.manifest import NNUNET, FileEntry

CHUNK = 1 << 20
STAGE_FILE = "stage.json"


class NoSpace(UserError):
    """The disk filled up while staging; nothing was placed."""

    exit_code = exitcodes.NO_SPACE


@dataclass
class Stage:
    id: str
    results: Path                       # imports/<id>/
    nnunet: Path | None = None          # <nnUNet_results>/<dataset>/.foldwatch-import-<id>/
    written: dict[str, str] = field(default_factory=dict)   # member -> sha256 as written

    @classmethod
    def create(cls, imports_dir: Path, nnunet_results: Path | None) -> "Stage":
        sid = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        stage = cls(sid, imports_dir / sid,
                    nnunet_results / f".foldwatch-import-{sid}" if nnunet_results else None)
        stage.results.mkdir(parents=True)
        atomic_write_json(stage.results / STAGE_FILE, {"id": sid, "created": time.time(),
                                                       "pid": os.getpid(),
                                                       "folders": stage.folders()})
        return stage

    def folders(self) -> list[str]:
        return [str(p) for p in (self.results, self.nnunet) if p is not None]

    def path(self, member: str) -> Path:
        if member.startswith(NNUNET):
            if self.nnunet is None:
                raise damaged(member, "an nnU-Net member in an import without nnU-Net folders")
            return self.nnunet / member
        return self.results / member

    def remove(self) -> None:
        for folder in self.folders():
            shutil.rmtree(folder, ignore_errors=True)


def leftover_stages(imports_dir: Path, journaled: set[str]) -> list[Path]:
    """Stage folders no journal names: imports that died before changing anything."""
    try:
        entries = list(imports_dir.iterdir())
    except OSError:
        return []
    return [p for p in entries if p.is_dir() and p.name not in journaled]


def remove_stage_folder(folder: Path) -> list[str]:
    """Remove a stage (and the nnU-Net side it names); the folders removed."""
    try:
        named = read_json(folder / STAGE_FILE).get("folders", [])
    except (OSError, ValueError, AttributeError):
        named = []
    gone = []
    for f in {str(folder), *named}:
        if Path(f).exists():
            shutil.rmtree(f, ignore_errors=True)
            gone.append(f)
    return gone


def write_member(stage: Stage, name: str, f, size: int, mtime: float) -> str:
    """Copy one member into the stage; its sha256."""
    target = stage.path(name)
    h = hashlib.sha256()
    written = 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as out:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                written += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.utime(target, (mtime, mtime))
    except OSError as e:
        if disk.is_no_space(e):
            raise NoSpace(f"no space left on {target.parent} while importing "
                          f"({disk.free_text(target.parent)}). Nothing was changed: free some "
                          "space and import again") from None
        raise UserError(f"cannot write {target}: {e.strerror or e}. Nothing was changed") \
            from None
    if written != size:
        raise damaged(name, f"{written} bytes read where {size} were announced")
    return h.hexdigest()


def copy_payload(source, stage: Stage, expected: dict[str, FileEntry],
                 wanted: Callable[[str], bool], strict: bool) -> None:
    """Stream `source.payload()` into `stage`: the members `wanted`, each checked against its
    manifest entry (size, and sha256 where the source has one). `strict`: every member must
    be in the manifest and every wanted manifest entry must arrive."""
    where = getattr(source, "where", str(getattr(source, "path", "")))
    seen: set[str] = set()
    for name, size, mtime, f in source.payload():
        entry = expected.get(name)
        if name in seen:
            raise damaged(where, f"member {name} appears twice")
        seen.add(name)
        if entry is None and strict:
            raise damaged(where, f"member {name!r} is not in its manifest")
        if not wanted(name):
            continue
        sha = write_member(stage, name, f, size, mtime)
        if entry is not None and (entry.size != size or (entry.sha256 and entry.sha256 != sha)):
            raise damaged(where, f"{name}: its checksum differs from the manifest's (a "
                          "changed byte)")
        stage.written[name] = sha
    lacking = sorted(n for n in expected if wanted(n) and n not in seen)
    if lacking:
        raise damaged(where, f"it ends after {len(seen)} of {len(seen) + len(lacking)} files; "
                      f"missing: {', '.join(lacking[:3])}" + (" …" if len(lacking) > 3 else ""))
    for folder in stage.folders():
        for dirpath, _, _ in os.walk(folder):
            fsync_dir(Path(dirpath))
