"""Folds trained by a plain `nnUNetv2_train` elsewhere, as import sources (docs/transfer.md,
"nnU-Net's own folders and zips"): a fold folder (`nnUNet_results/DatasetX/Trainer__Plans__cfg/
fold_k`, or the model folder for all its folds) or the zip of `nnUNetv2_export_model_to_zip`.

They carry no manifest: the manifest is made here from the model folder's plans.json,
dataset.json and dataset_fingerprint.json (the context the import checks), and foldwatch's
metrics.jsonl is written from nnU-Net's training logs (console.runner.nnunet_log) and
debug.json, so the fold shows its curves and counts as completed like one trained here. A zip's
members are checked against their CRC-32 as they are read (zipfile); a folder is read as it is.
"""

from __future__ import annotations

import io
import json
import re
import socket
import time
import zipfile
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Iterator

from contracts.errors import ConfigError
from contracts.jsonio import dumps

from console.runner.nnunet_log import NnunetLogParser
from console.transfer import context as ctx
from console.transfer.archive import Guarded
from console.transfer.manifest import FileEntry, Manifest, RunEntry, nnunet_prefix, run_prefix

FOLD = re.compile(r"^fold_(\d+)$")
STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d+): ")


def _stamp(line: str) -> float | None:
    m = STAMP.match(line)
    if not m:
        return None
    try:
        return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
    except ValueError:
        return None


def metrics_from_nnunet(key: str, cfg: str, fold: int, logs: list[str], debug: dict,
                        summary: dict, finished: float) -> bytes:
    """foldwatch's metrics.jsonl for a fold nnU-Net trained alone: a `start` per training log
    (each `--c` writes a new one), its epochs, the final validation and `end`."""
    def num(key_: str) -> int | None:
        try:
            return int(debug.get(key_))
        except (TypeError, ValueError):
            return None
    lines: list[dict] = []
    parser = NnunetLogParser()
    base = {"configuration": cfg, "fold": fold, "pid": None, "host": debug.get("hostname"),
            "device": debug.get("device"), "resumed_from": None, "epochs": num("num_epochs"),
            "iterations_per_epoch": num("num_iterations_per_epoch"),
            "batch_size": num("batch_size"), "imported": True, "trainer": "nnunetv2"}
    t = finished
    for i, text in enumerate(logs or [""]):
        first = next((s for s in map(_stamp, text.splitlines()) if s is not None), None)
        t = first or t
        lines.append({"t": t, "event": "start", **base, "attempt": i + 1})
        for raw in text.splitlines():
            t = _stamp(raw) or t
            for name, fields in parser.feed(raw):
                fields = {k: v for k, v in fields.items() if k != "new_best"}
                lines.append({"t": t, "event": name, **fields})
        for name, fields in parser.flush():
            lines.append({"t": t, "event": name, **{k: v for k, v in fields.items()
                                                     if k != "new_best"}})
    fg = (summary.get("foreground_mean") or {}).get("Dice")
    cases = len(summary.get("metric_per_case") or [])
    lines.append({"t": max(t, finished), "event": "validation", "foreground_dice": fg,
                  "cases": cases})
    lines.append({"t": max(t, finished), "event": "end", "status": "completed",
                  "reason": "completed", "message": None, "error": None, "exit_code": 0})
    return "".join(dumps(ev) + "\n" for ev in lines).encode()


class _Model:
    """One `Trainer__Plans__cfg` folder of the source and the folds in it."""

    def __init__(self, dataset: str, name: str) -> None:
        parts = name.split("__")
        if len(parts) != 3:
            raise ConfigError(f"{name}: not an nnU-Net model folder name "
                              "(<trainer>__<plans>__<configuration>)")
        self.dataset, self.name = dataset, name
        self.trainer, self.plans, self.configuration = parts
        self.files: dict[str, str] = {}                   # plans.json ... -> source path
        self.folds: dict[int, dict[str, tuple]] = {}      # fold -> rel -> (source, size, mtime)


class NnunetSource:
    def __init__(self, path: Path) -> None:
        self.path, self.where = path, str(path)
        self.sha256 = self.manifest_sha = None
        self._zip = zipfile.ZipFile(path) if not path.is_dir() else None
        self.kind = "nnunet-zip" if self._zip else "nnunet-folder"
        self.models = self._scan_zip() if self._zip else self._scan_folder()
        if not self.models or not any(m.folds for m in self.models):
            raise ConfigError(f"{path}: no nnU-Net fold in it (expected fold_<k> folders under "
                              "<dataset>/<trainer>__<plans>__<configuration>/)")
        self.validated: dict[str, set[str]] = {}
        self.context = self._context()
        self._synth: dict[str, bytes] = {}
        self.manifest = self._manifest()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> "NnunetSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what is in it ----------------------------------------------------------------------
    def _scan_folder(self) -> list[_Model]:
        p = self.path.resolve()
        fold_dirs = [p] if FOLD.match(p.name) else sorted(
            (c for c in p.iterdir() if c.is_dir() and FOLD.match(c.name)), key=lambda c: c.name)
        if not fold_dirs:
            raise ConfigError(f"{p}: neither an nnU-Net fold folder (fold_<k>) nor a model "
                              "folder holding fold_<k> folders")
        model_dir = fold_dirs[0].parent
        model = _Model(model_dir.parent.name, model_dir.name)
        for name in ctx.NN_MODEL_FILES.values():
            if (model_dir / name).is_file():
                model.files[name] = str(model_dir / name)
        for fd in fold_dirs:
            files = {}
            for f in sorted(fd.rglob("*")):
                if f.is_file() and not f.is_symlink() and not f.name.startswith("."):
                    rel = f.relative_to(fd).as_posix()
                    if rel.split("/")[0] != "wandb":
                        st = f.stat()
                        files[rel] = (str(f), st.st_size, st.st_mtime)
            model.folds[int(FOLD.match(fd.name).group(1))] = files
        return [model]

    def _scan_zip(self) -> list[_Model]:
        models: dict[str, _Model] = {}
        for info in self._zip.infolist():
            parts = info.filename.split("/")
            if info.is_dir() or len(parts) < 3 or "__" not in parts[1]:
                continue          # ensembles/, inference_information.*: not folds
            key = "/".join(parts[:2])
            model = models.get(key) or models.setdefault(key, _Model(parts[0], parts[1]))
            if len(parts) == 3 and parts[2] in ctx.NN_MODEL_FILES.values():
                model.files[parts[2]] = info.filename
            elif len(parts) >= 4 and FOLD.match(parts[2]):
                fold = int(FOLD.match(parts[2]).group(1))
                mtime = time.mktime(info.date_time + (0, 0, -1))
                model.folds.setdefault(fold, {})["/".join(parts[3:])] = (info.filename,
                                                                         info.file_size, mtime)
        return list(models.values())

    def _open(self, source: str) -> BinaryIO:
        return self._zip.open(source) if self._zip else open(source, "rb")

    def _read(self, source: str) -> bytes:
        with self._open(source) as f:
            return f.read()

    def _context(self) -> dict[str, bytes]:
        m = self.models[0]
        lacking = [n for n in ctx.NN_MODEL_FILES.values() if n not in m.files]
        if lacking:
            raise ConfigError(f"{self.where}: the model folder {m.name} lacks "
                              f"{', '.join(lacking)} (nnUNetv2_train writes them when a fold "
                              "starts); copy the whole model folder")
        return {name: self._read(m.files[file]) for name, file in ctx.NN_MODEL_FILES.items()}

    def _manifest(self) -> Manifest:
        runs, files = [], []
        for m in self.models:
            for fold, members in sorted(m.folds.items()):
                key = f"{m.configuration}/{fold}"
                runs.append(self._run(m, fold, members, key))
                pre = nnunet_prefix(m.configuration, fold)
                files += [FileEntry(pre + rel, size, "") for rel, (_, size, _) in members.items()]
                name = run_prefix(m.configuration, fold) + "metrics.jsonl"
                files.append(FileEntry(name, len(self._synth[name]), ""))
        first = self.models[0]
        cfgs = list(dict.fromkeys(m.configuration for m in self.models))
        digests = ctx.digests("nnunetv2", ctx.parse(self.context, self.where), cfgs, self.where)
        return Manifest(experiment="", trainer="nnunetv2", created=time.time(),
                        host=socket.gethostname(), user=None, foldwatch="",
                        results=self.where, digests=digests, runs=runs, files=files,
                        nnunet={"dataset": first.dataset, "trainer": first.trainer,
                                "plans": first.plans,
                                "models": sorted({(m.trainer, m.plans) for m in self.models})})

    def _json(self, members: dict, rel: str) -> dict:
        if rel not in members:
            return {}
        try:
            data = json.loads(self._read(members[rel][0]))
        except (ValueError, OSError, KeyError):
            return {}
        return data if isinstance(data, dict) else {}

    def _run(self, m: _Model, fold: int, members: dict, key: str) -> RunEntry:
        debug = self._json(members, "debug.json")
        summary = self._json(members, "validation/summary.json")
        ending = json.loads(self.context[ctx.NN_DATASET]).get("file_ending", ".nii.gz")
        self.validated[key] = {Path(c.get("prediction_file", "")).name.removesuffix(ending)
                               for c in summary.get("metric_per_case") or []}
        logs = [self._read(src).decode("utf-8", "replace") for rel, (src, _, _)
                in sorted(members.items()) if re.fullmatch(r"training_log_[^/]*\.txt", rel)]
        final = members.get("checkpoint_final.pth")
        finished = final[2] if final else time.time()
        name = run_prefix(m.configuration, fold) + "metrics.jsonl"
        self._synth[name] = metrics_from_nnunet(key, m.configuration, fold, logs, debug,
                                                summary, finished)
        epochs = [json.loads(line).get("epoch") for line in self._synth[name].splitlines()
                  if b'"event": "epoch"' in line]
        return RunEntry(key=key, configuration=m.configuration, fold=fold,
                        trained_on=debug.get("hostname"), completed=finished,
                        epochs=(max(epochs) + 1) if epochs else None,
                        validation_dice=(summary.get("foreground_mean") or {}).get("Dice"),
                        nnunet=True)

    def members(self, key: str) -> dict[str, tuple]:
        cfg, _, k = key.rpartition("/")
        return next(m.folds[int(k)] for m in self.models if m.configuration == cfg)

    def payload(self) -> Iterator[tuple[str, int, float, BinaryIO]]:
        for m in self.models:
            for fold, members in sorted(m.folds.items()):
                pre = nnunet_prefix(m.configuration, fold)
                for rel, (src, size, mtime) in members.items():
                    with self._open(src) as f:
                        yield pre + rel, size, mtime, Guarded(f, self.where, rel)
                name = run_prefix(m.configuration, fold) + "metrics.jsonl"
                yield name, len(self._synth[name]), time.time(), io.BytesIO(self._synth[name])
