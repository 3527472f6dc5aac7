"""`foldwatch pack EXP --runs 2d/3,2d/4 [-o FILE]`: completed folds into one archive.

Plain tar (no compression: checkpoints, .nii.gz, .npz and .png barely shrink, and a login node's
CPU is better spent elsewhere), read and written as a stream: the manifest first, so an import
can refuse a fold trained with another plan before copying gigabytes. Written as a temp file
beside the target and renamed when complete: an interrupted pack leaves no archive that looks
whole. Every file is hashed once to write the manifest and again while it is copied into the
archive; a file that changed in between stops the pack.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import tarfile
import time
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from contracts.errors import ConfigError, UserError
from contracts.experiment import Experiment
from contracts.jsonio import fsync_dir

from console.store import disk
from console.transfer import context as ctx
from console.transfer.fold_files import (Fold, completed, folds_of, fold_keys, incomplete,
                                         nnunet_dir_files, read_log, run_dir_files)
from console.transfer.staging import NoSpace
from console.transfer.manifest import (MANIFEST, MANIFEST_SHA, FileEntry, Manifest, RunEntry,
                                       nnunet_prefix, run_prefix)

CHUNK = 1 << 20


@dataclass
class Packed:
    path: Path
    size: int
    keys: list[str]
    files: int


def check_runs(exp: Experiment, runs: list[str]) -> list[str]:
    known = fold_keys(exp)
    unknown = [r for r in runs if r not in known]
    if unknown or not runs:
        what = "no runs given" if not runs else "no such fold: " + ", ".join(unknown)
        raise ConfigError(f"--runs {','.join(runs)}: {what}; the experiment's folds are "
                          f"{', '.join(known)}")
    return list(dict.fromkeys(runs))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _refuse_incomplete(exp: Experiment, folds: list[Fold]) -> None:
    problems = {f.key: incomplete(exp, f) for f in folds}
    bad = {k: p for k, p in problems.items() if p}
    if not bad:
        return
    lines = [f"{k} has not completed: {'; '.join(p)}" for k, p in bad.items()]
    raise ConfigError("\n".join(lines) + "\nOnly completed folds are packed: let them finish "
                      f"(`foldwatch up {exp.source} --runs {','.join(bad)}` resumes them), "
                      "then pack again")


def _default_name(exp: Experiment, keys: list[str]) -> Path:
    runs = "+".join(k.replace("/", "-fold") for k in keys)
    return Path.cwd() / f"{exp.experiment}-{runs}-{socket.gethostname()}.tar"


def _version() -> str:
    try:
        return metadata.version("foldwatch")
    except metadata.PackageNotFoundError:
        return "unknown"


def _run_entry(exp: Experiment, fold: Fold) -> RunEntry:
    log = read_log(fold.run_dir)
    end_t = log.end.get("t") if completed(log) else None
    return RunEntry(key=fold.key, configuration=fold.configuration, fold=fold.fold,
                    trained_on=log.host, completed=end_t, epochs=log.epochs_done,
                    validation_dice=log.validation_dice, hyperparameters=log.hyperparameters,
                    nnunet=fold.nnunet_dir is not None)


def build_manifest(exp: Experiment, keys: list[str], all_checkpoints: bool):
    """(manifest, context members, [(member name, file)]) for the completed folds `keys`."""
    folds, places = folds_of(exp, keys)
    _refuse_incomplete(exp, folds)
    configurations = list(dict.fromkeys(f.configuration for f in folds))
    context = ctx.local_context(exp, configurations, model_files=True)
    where = f"{exp.source}"
    digests = ctx.digests(exp.trainer, ctx.parse(context, where), configurations, where)
    members: list[tuple[str, Path]] = []
    for f in folds:
        members += [(run_prefix(f.configuration, f.fold) + rel, p)
                    for rel, p in run_dir_files(exp, f, all_checkpoints)]
        members += [(nnunet_prefix(f.configuration, f.fold) + rel, p)
                    for rel, p in nnunet_dir_files(f, all_checkpoints)]
    files = [FileEntry(name, len(data), hashlib.sha256(data).hexdigest())
             for name, data in context.items()]
    for name, path in members:
        try:
            files.append(FileEntry(name, path.stat().st_size, sha256_file(path)))
        except OSError as e:
            raise UserError(f"{path}: cannot read it ({e.strerror or e}); nothing was written") \
                from None
    manifest = Manifest(experiment=exp.experiment, trainer=exp.trainer, created=time.time(),
                        host=socket.gethostname(), user=_user(), foldwatch=_version(),
                        results=str(exp.layout.root), digests=digests,
                        runs=[_run_entry(exp, f) for f in folds], files=files,
                        nnunet=places.info() if places else None,
                        all_checkpoints=all_checkpoints)
    return manifest, context, members


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


class _Hashing:
    """A file read by tarfile, hashed on the way; `sha256` is checked after the member."""

    def __init__(self, f) -> None:
        self.f, self.h = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.h.update(data)
        return data


def _info(name: str, size: int, mtime: float) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = size, int(mtime), 0o644
    return ti


def write_archive(target: Path, manifest: Manifest, context: dict[str, bytes],
                  members: list[tuple[str, Path]]) -> int:
    """Write the archive to a temp file beside `target` and rename it there; its size."""
    head = manifest.to_bytes()
    expected = {f.name: f for f in manifest.files}
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
                now = time.time()
                for name, data in ((MANIFEST, head),
                                   (MANIFEST_SHA, (Manifest.sha(head) + "\n").encode()),
                                   *context.items()):
                    tar.addfile(_info(name, len(data), now), _Bytes(data))
                for name, path in members:
                    entry = expected[name]
                    with open(path, "rb") as f:
                        st = os.fstat(f.fileno())
                        if st.st_size != entry.size:
                            raise UserError(f"{path} changed while it was packed (size "
                                            f"{entry.size} -> {st.st_size}); is the fold "
                                            "still being written? Nothing was written")
                        reader = _Hashing(f)
                        tar.addfile(_info(name, entry.size, st.st_mtime), reader)
                    if reader.h.hexdigest() != entry.sha256:
                        raise UserError(f"{path} changed while it was packed; is the fold "
                                        "still being written? Nothing was written")
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError as e:
        _unlink(tmp)
        if disk.is_no_space(e):
            need = sum(f.size for f in manifest.files)
            raise NoSpace(f"no space left writing {target}: {disk.free_text(target.parent)}, "
                            f"the archive needs about {disk.mb(need)}. Nothing was written; "
                            "free some space or pack elsewhere (-o)") from None
        raise UserError(f"cannot write {target}: {e.strerror or e}; nothing was written") \
            from None
    except BaseException:
        _unlink(tmp)
        raise
    return target.stat().st_size


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        out, self.pos = self.data[self.pos:end], min(end, len(self.data))
        return out


def _unlink(p: Path) -> None:
    try:
        p.unlink()
    except OSError:
        pass


def pack(exp: Experiment, runs: list[str], out: Path | None = None,
         all_checkpoints: bool = False) -> Packed:
    keys = check_runs(exp, runs)
    target = (out if out is not None else _default_name(exp, keys)).expanduser().absolute()
    if target.is_dir():
        target = target / _default_name(exp, keys).name
    if target.exists():
        raise ConfigError(f"{target} exists; name another file with -o (an archive is never "
                          "overwritten)")
    if not target.parent.is_dir():
        raise ConfigError(f"{target.parent}: no such folder for the archive")
    manifest, context, members = build_manifest(exp, keys, all_checkpoints)
    need = sum(f.size for f in manifest.files)
    u = disk.usage(target.parent)
    if u is not None and u[0] < need:
        raise NoSpace(f"not enough space for {target}: {disk.free_text(target.parent)}, the "
                        f"archive needs about {disk.mb(need)}. Nothing was written; free some "
                        "space or pack elsewhere (-o)")
    size = write_archive(target, manifest, context, members)
    return Packed(target, size, keys, len(members))
