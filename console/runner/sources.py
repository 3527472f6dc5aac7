"""Where the runner (console.runner) gets a program's metrics and checkpoints from."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Callable

from console.runner.nnunet_log import NnunetLogParser
from contracts.jsonio import iter_jsonl
from contracts.kinds import PATTERN_FIELDS

Events = list[tuple[str, dict]]


def resumed_from(metrics: Path) -> dict:
    """What earlier attempts left in metrics.jsonl: attempt number, epochs done, last EMA."""
    attempt, epoch, ema = 1, None, None
    try:
        for ev in iter_jsonl(metrics):
            name = ev.get("event")
            if name == "start":
                attempt += 1
            elif name == "checkpoint" and ev.get("kind") in ("latest", "final"):
                if isinstance(ev.get("epoch"), int):
                    epoch = ev["epoch"]
            elif name == "epoch" and isinstance(ev.get("ema_dice"), (int, float)):
                ema = ev["ema_dice"]
    except OSError:
        pass
    return {"attempt": attempt, "epoch": epoch, "ema": ema}


class _LineFile:
    """Appended lines of one file: byte offset, partial last line kept until its newline."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.partial = path, 0, b""

    def lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        self.offset += len(data)
        data = self.partial + data
        *complete, self.partial = data.split(b"\n")
        return [c.decode("utf-8", "replace") for c in complete]


class NnunetLogSource:
    """The training log nnU-Net writes in its fold folder during this attempt.

    nnU-Net starts a new `training_log_<date>_<time>.txt` per process (appending when two
    starts share a second); what earlier attempts wrote is recorded at start and skipped, so
    a restart soon after a kill does not re-read the old log.
    """

    def __init__(self, folder_glob: str) -> None:
        self.folder_glob = folder_glob
        self.parser = NnunetLogParser()
        self.file: _LineFile | None = None
        self.before = self._sizes()

    def _sizes(self) -> dict[Path, int]:
        sizes = {}
        for folder in glob.glob(self.folder_glob):
            for p in Path(folder).glob("training_log_*.txt"):
                try:
                    sizes[p] = p.stat().st_size
                except OSError:
                    pass
        return sizes

    def _find(self) -> None:
        grown = [p for p, size in self._sizes().items() if size > self.before.get(p, 0)]
        if grown:
            newest = max(grown, key=lambda p: p.name)
            self.file = _LineFile(newest)
            self.file.offset = self.before.get(newest, 0)

    def poll(self) -> Events:
        if self.file is None:
            self._find()
            if self.file is None:
                return []
        out: Events = []
        for line in self.file.lines():
            out += self.parser.feed(line)
        return out

    def finish(self) -> Events:
        return self.poll() + self.parser.flush(ended=True)


class PatternSource:
    """A regular expression over the program's stdout, one match per epoch (or iteration)."""

    def __init__(self, rx: re.Pattern, first_epoch: int = 0) -> None:
        self.rx, self.first_epoch = rx, first_epoch
        self.last_epoch: int | None = None

    def feed(self, line: str) -> Events:
        m = self.rx.search(line)
        if m is None or m.group("epoch") is None:
            return []
        fields: dict = {}
        for group, value in m.groupdict().items():
            if value is None:
                continue
            try:
                num = float(value)
            except ValueError:
                continue
            fields[PATTERN_FIELDS[group]] = num
        epoch = int(fields.pop("epoch")) - self.first_epoch
        if "iter" in fields:
            return [("iter", {"epoch": epoch, "iter": int(fields.pop("iter")),
                              "loss": fields.get("train_loss"), "lr": fields.get("lr"),
                              "samples_per_s": None})]
        self.last_epoch = epoch
        event = {"epoch": epoch, "train_loss": None, "val_loss": None, "val_dice": None,
                 "val_dice_per_class": None, "ema_dice": None, "lr": None, "epoch_s": None,
                 "data_wait_frac": None, "peak_mem_mb": None}
        event.update({k: v for k, v in fields.items() if k != "epochs"})
        return [("epoch", event)]


class CheckpointGlob:
    """The newest file matching the command's checkpoint glob, announced when it changes."""

    def __init__(self, pattern: str, cwd: Path | None, since: float,
                 epochs_done: Callable[[], int | None]) -> None:
        self.pattern = resolve(pattern, cwd)
        self.since, self.epochs_done = since, epochs_done
        self.seen: tuple[str, float] | None = None

    def poll(self) -> Events:
        newest = newest_match(self.pattern)
        if newest is None:
            return []
        path, mtime = newest
        if mtime < self.since or (path, mtime) == self.seen:
            return []
        self.seen = (path, mtime)
        return [("checkpoint", {"kind": "latest", "epoch": self.epochs_done(), "path": path})]

    def finish(self) -> Events:
        return self.poll()


def resolve(pattern: str, cwd: Path | None) -> str:
    return pattern if os.path.isabs(pattern) else str(Path(cwd or ".") / pattern)


def newest_match(pattern: str) -> tuple[str, float] | None:
    """(path, mtime) of the most recently modified file matching a glob; dot files skipped."""
    best = None
    for p in glob.glob(pattern):
        if os.path.basename(p).startswith("."):
            continue        # a temp file being written
        try:
            mtime = os.stat(p).st_mtime
        except OSError:
            continue
        if best is None or mtime > best[1]:
            best = (os.path.abspath(p), mtime)
    return best
