"""`foldwatch import EXP FILE...`: folds trained elsewhere into this experiment, each source
all or nothing (docs/transfer.md, "Importing").

1. An interrupted earlier import is finished (journal) and stale staging folders are removed.
2. The source is checked against this experiment before anything is copied (verify.py).
3. An existing fold is never touched without --replace (and then moved aside, never deleted);
   a running one not even then.
4. The files are streamed once into staging folders on the destinations' disks, every byte
   checked (staging.py); the fold's origin.json is written there.
5. Supervisors are asked to hold the arriving folds, the staged folders are renamed into place
   under a journal (journal.py), and the supervisors are told (supervisors.py).
"""

from __future__ import annotations

import socket
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from contracts import origin as org
from contracts.errors import ConfigError
from contracts.experiment import Experiment
from contracts.jsonio import atomic_write_json
from contracts.runlock import RunBusy, RunLock

from console.store import disk, faults
from console.transfer import context as ctx
from console.transfer import journal as jr
from console.transfer import supervisors
from console.transfer.archive import FoldArchive
from console.transfer.fold_files import (Fold, completed, describe_end, folds_of, read_log,
                                         running)
from console.transfer.manifest import CONTEXT, nnunet_prefix, run_prefix
from console.transfer.nnunet import NnunetSource
from console.transfer.staging import (NoSpace, Stage, copy_payload, leftover_stages,
                                      remove_stage_folder)
from console.transfer.verify import Refused, check


@dataclass
class Imported:
    source: str
    keys: list[str]
    notes: list[str] = field(default_factory=list)
    aside: list[str] = field(default_factory=list)     # folders moved aside (--replace)
    already: bool = False                              # imported from this archive before


def open_source(path: Path):
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder")
    if path.is_dir():
        return NnunetSource(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror or e})") from None
    # by the first bytes: zipfile.is_zipfile also says yes to a tar whose last member is a
    # zip (an .npz), as it looks for a zip's end record near the end of the file
    if head == b"PK\x03\x04" and zipfile.is_zipfile(path):
        return NnunetSource(path)
    return FoldArchive(path)


class ImportLock:
    """One import at a time per experiment (imports/lock, with its holder record)."""

    def __init__(self, exp: Experiment) -> None:
        exp.layout.imports_dir.mkdir(parents=True, exist_ok=True)
        self.lock = RunLock.at(exp.layout.imports_dir / "lock", role="import")

    def __enter__(self) -> "ImportLock":
        try:
            self.lock.acquire()
        except RunBusy as e:
            h = e.holder or {}
            raise ConfigError(f"another import into this experiment is running (pid "
                              f"{h.get('pid', '?')} on {h.get('host', '?')}); wait for it") \
                from None
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()


def recover(exp: Experiment) -> tuple[list[str], list[str]]:
    """Finish commits a crash interrupted; remove stages that never got to one. (messages,
    keys put in place now)."""
    imports = exp.layout.imports_dir
    said, keys, journaled = [], [], set()
    for path, j in jr.pending(imports):
        if j is None:
            said.append(f"{path}: an import journal that cannot be read; look at it, then "
                        "remove it (the folders it names are left as they are)")
            journaled.add(path.name.removesuffix(jr.SUFFIX))
            continue
        journaled.add(j.id)
        try:
            jr.carry_out(imports, j)
        except (jr.CannotFinish, OSError) as e:
            said.append(f"an interrupted import of {', '.join(j.keys)} from {j.source} cannot "
                        f"be finished: {e}. Its journal stays in {imports}")
            continue
        keys += j.keys
        said.append(f"finished the interrupted import of {', '.join(j.keys)} from {j.source}")
    for folder in leftover_stages(imports, journaled):
        remove_stage_folder(folder)
        said.append(f"removed the staging folder of an import interrupted before it changed "
                    f"anything ({folder.name})")
    return said, keys


def _nonempty(p: Path | None) -> bool:
    try:
        return p is not None and p.is_dir() and any(p.iterdir())
    except OSError:
        return True


def _state(fold: Fold) -> str:
    log = read_log(fold.run_dir)
    if completed(log):
        return "completed"
    return "partly trained: " + describe_end(log) if log.end or log.host else "has files"


def _check_destinations(exp: Experiment, folds: list[Fold], replace: bool, where: str) -> None:
    problems = []
    live = supervisors.active_here(exp, [f.key for f in folds])
    for f in folds:
        present = [p for p in (f.run_dir, f.nnunet_dir) if _nonempty(p)]
        who = running(f) or live.get(f.key)
        if who:
            problems.append(f"{f.key} is running here ({who}); stop it first (`foldwatch stop "
                            f"{exp.source} --run {f.key}`)" + (", then import with --replace"
                                                               if present else ""))
        elif present and not replace:
            problems.append(f"{f.key} exists here ({_state(f)}: "
                            f"{', '.join(map(str, present))}); --replace moves it aside "
                            "(kept as fold_<k>.old-<time>, never deleted) and imports")
    if problems:
        raise Refused(where, problems)


def _check_space(stage_roots: list[Path], need: int, where: str) -> None:
    for root in stage_roots:
        u = disk.usage(root)
        if u is not None and u[0] < need:
            raise NoSpace(f"not enough space to import {where}: {disk.free_text(root)}, "
                            f"the folds need about {disk.mb(need)}. Nothing was changed; free "
                            "some space and import again")


def _origin(source, exp: Experiment, run, replaced: list[str]) -> dict:
    m = source.manifest
    path = Path(source.path).absolute()
    return {"version": org.VERSION, "key": run.key, "trainer": m.trainer,
            "trained_on": run.trained_on or (m.host if source.kind == "foldwatch-archive"
                                             else None),
            "completed": run.completed,
            "packed_on": m.host if source.kind == "foldwatch-archive" else None,
            "packed": m.created if source.kind == "foldwatch-archive" else None,
            "imported_on": socket.gethostname(), "imported": time.time(),
            "source": {"kind": source.kind, "path": str(path), "sha256": source.sha256,
                       "manifest_sha256": source.manifest_sha,
                       "size": path.stat().st_size if path.is_file() else None},
            "experiment": m.experiment or None,
            "digests": {"plan": (m.digests.get("plan") or {}).get(run.configuration),
                        "splits": m.digests.get("splits"),
                        "fingerprint": m.digests.get("fingerprint")},
            "replaced": replaced or None, "run": run.__dict__}


def _already(folds: list[Fold], source) -> bool:
    if not source.manifest_sha:
        return False
    for f in folds:
        rec = org.read_origin(f.run_dir) or {}
        if (rec.get("source") or {}).get("manifest_sha256") != source.manifest_sha:
            return False
    return True


def _plan_commit(exp, source, checked, folds, places, stage: Stage, replace: bool,
                 result: Imported) -> jr.Journal:
    j = jr.Journal(id=stage.id, source=str(source.path), keys=[f.key for f in folds],
                   stage=stage.folders())
    runs = {r.key: r for r in source.manifest.runs}
    for f in folds:
        pairs = [(stage.path(nnunet_prefix(f.configuration, f.fold)), f.nnunet_dir)] \
            if f.nnunet_dir is not None else []
        pairs.append((stage.path(run_prefix(f.configuration, f.fold)), f.run_dir))
        replaced = []
        for src, dest in pairs:          # nnU-Net's folder first: the run folder commits
            try:
                dest.rmdir()             # an empty folder holds nothing to keep
            except OSError:
                pass
            aside = jr.aside_path(dest) if replace and (dest.exists() or dest.is_symlink()) \
                else None
            if aside is not None:
                replaced.append(str(aside))
            src.mkdir(parents=True, exist_ok=True)
            j.moves.append(jr.Move(str(src), str(dest), str(aside) if aside else None))
        result.aside += replaced
        atomic_write_json(stage.path(run_prefix(f.configuration, f.fold)) / org.ORIGIN_FILE,
                          _origin(source, exp, runs[f.key], replaced))
    if places is not None:
        wanted = dict(ctx.NN_MODEL_FILES)
        if checked.install_splits:
            wanted[ctx.NN_SPLITS] = "splits_final.json"
        for name, file in wanted.items():
            staged = stage.results / name
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_bytes(source.context[name])
            targets = ([places.preprocessed / file] if name == ctx.NN_SPLITS else
                       [places.model_dir(c) / file for c in
                        dict.fromkeys(f.configuration for f in folds)])
            j.installs += [jr.Install(str(staged), str(t)) for t in targets]
    return j


def import_one(exp: Experiment, path: Path, replace: bool,
               runs: list[str] | None = None) -> Imported:
    with open_source(path) as source:
        checked = check(exp, source, runs)
        result = Imported(str(path), checked.keys, list(checked.notes))
        folds, places = folds_of(exp, checked.keys)
        if not replace and _already(folds, source):
            result.already = True
            return result
        _check_destinations(exp, folds, replace, source.where)
        prefixes = tuple(p for f in folds for p in (run_prefix(f.configuration, f.fold),
                                                    nnunet_prefix(f.configuration, f.fold)))
        expected = {e.name: e for e in source.manifest.files if not e.name.startswith(CONTEXT)}
        need = sum(e.size for e in expected.values() if e.name.startswith(prefixes))
        _check_space([exp.layout.root] + ([places.results] if places else []), need,
                     source.where)
        if places is not None:
            places.results.mkdir(parents=True, exist_ok=True)
        stage = Stage.create(exp.layout.imports_dir, places.results if places else None)
        committing = False
        try:
            copy_payload(source, stage, expected, lambda n: n.startswith(prefixes),
                         strict=source.kind == "foldwatch-archive")
            faults.point("import:staged")
            j = _plan_commit(exp, source, checked, folds, places, stage, replace, result)
            result.notes += supervisors.hold_queued(exp, checked.keys)
            committing = True
            try:
                jr.commit(exp.layout.imports_dir, j)
            except OSError as e:
                raise ConfigError(f"{source.where}: putting the folds in place stopped: "
                                  f"{e.strerror or e} ({e.filename}). The journal "
                                  f"{jr.journal_path(exp.layout.imports_dir, j.id)} keeps "
                                  "what is left to do: fix the cause and run `foldwatch "
                                  "import` again, which finishes it first") from None
        except BaseException:
            if not committing:
                stage.remove()
            raise
    return result


def import_files(exp: Experiment, files: list[Path], replace: bool = False,
                 runs: list[str] | None = None, say=print, on_result=None) -> list[Imported]:
    """Import each source in turn, each all or nothing. A source that fails raises, after the
    ones before it were imported and announced; `say` gets the lines for the user."""
    done: list[Imported] = []
    with ImportLock(exp):
        said, recovered = recover(exp)
        for line in said:
            say(line)
        try:
            for path in files:
                r = import_one(exp, path, replace, runs)
                done.append(r)
                if on_result:
                    on_result(r)
        finally:
            keys = recovered + [k for r in done if not r.already for k in r.keys]
            if keys:
                for line in supervisors.announce(exp, keys):
                    say(line)
    return done
