"""Putting staged folds in place: a journal first, then renames, so a crash at any instant
leaves either the old folders or the complete new ones once the next import has run.

`imports/<id>.journal.json` lists every step: move an existing folder aside (`--replace`), rename
a staged folder into place, copy a model-level file nnU-Net needs where none exists. Each step
can be done again safely, so the next `foldwatch import` finishes an interrupted commit (rolls
it forward) before anything else; the journal goes last. Nothing is ever deleted but our own
staging folders.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from contracts.errors import ConfigError
from contracts.jsonio import atomic_write_bytes, atomic_write_json, fsync_dir, read_json

from console.store import faults

SUFFIX = ".journal.json"


@dataclass
class Move:
    src: str                     # the staged folder
    dest: str                    # where it goes
    aside: str | None = None     # where the folder at `dest` goes first (--replace)


@dataclass
class Install:
    src: str                     # a staged file
    dest: str                    # copied there only when nothing is there yet


@dataclass
class Journal:
    id: str
    source: str
    keys: list[str]
    moves: list[Move] = field(default_factory=list)
    installs: list[Install] = field(default_factory=list)
    stage: list[str] = field(default_factory=list)      # the staging folders, removed last
    started: float = field(default_factory=time.time)

    @classmethod
    def load(cls, path: Path) -> "Journal":
        raw = read_json(path)
        return cls(id=raw["id"], source=raw["source"], keys=list(raw["keys"]),
                   moves=[Move(**m) for m in raw["moves"]],
                   installs=[Install(**i) for i in raw["installs"]], stage=list(raw["stage"]),
                   started=raw.get("started", 0.0))


def aside_path(dest: Path) -> Path:
    """`<name>.old-<stamp>` beside `dest`, as the console's restart-from-scratch names it."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target, n = dest.with_name(f"{dest.name}.old-{stamp}"), 1
    while target.exists():
        target, n = dest.with_name(f"{dest.name}.old-{stamp}-{n}"), n + 1
    return target


class CannotFinish(ConfigError):
    """A step of a journal cannot be done (the destination changed meanwhile)."""


def _exists(p: Path) -> bool:
    return p.exists() or p.is_symlink()


def _move(m: Move) -> None:
    src, dest = Path(m.src), Path(m.dest)
    if not _exists(src):
        return                                  # done before the interruption
    if _exists(dest):
        if m.aside is None:
            raise CannotFinish(f"{dest} appeared while importing (a fold started training "
                               f"there?); the imported copy is kept at {src}")
        if _exists(Path(m.aside)):
            raise CannotFinish(f"{dest} and {m.aside} both exist; the imported copy is kept "
                               f"at {src}")
        os.rename(dest, m.aside)
        faults.point("import:aside")
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.rename(src, dest)
    fsync_dir(dest.parent)
    faults.point("import:placed")


def _install(i: Install) -> None:
    src, dest = Path(i.src), Path(i.dest)
    if _exists(dest) or not src.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest, src.read_bytes())


def journal_path(imports_dir: Path, jid: str) -> Path:
    return imports_dir / f"{jid}{SUFFIX}"


def carry_out(imports_dir: Path, j: Journal) -> None:
    """Every step of `j` (again), then the journal and the staging folders go."""
    for m in j.moves:
        _move(m)
    for i in j.installs:
        _install(i)
    path = journal_path(imports_dir, j.id)
    path.unlink()
    fsync_dir(imports_dir)
    from console.transfer.staging import remove_stage_folder
    for folder in j.stage:
        remove_stage_folder(Path(folder))


def commit(imports_dir: Path, j: Journal) -> None:
    atomic_write_json(journal_path(imports_dir, j.id), asdict(j))
    faults.point("import:journal")
    carry_out(imports_dir, j)


def pending(imports_dir: Path) -> list[tuple[Path, Journal | None]]:
    """Journals of commits that were interrupted (None: an unreadable journal)."""
    out = []
    for path in sorted(imports_dir.glob(f"*{SUFFIX}")):
        try:
            out.append((path, Journal.load(path)))
        except (OSError, ValueError, KeyError, TypeError):
            out.append((path, None))
    return out
