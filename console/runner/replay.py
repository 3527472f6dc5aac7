"""What a killed attempt saved but never announced, written before the next attempt's `start`.

The runner turns a program's checkpoint into a `checkpoint` event after the program saved it
(checkpoint, then announce). A SIGKILL of the whole process group (the watchdog after a stall
or a stop past its grace period, the OOM killer, `kill -9`) can land between the two: the
file and nnU-Net's log line about it are on disk, the runner that would have read them is
gone, and metrics.jsonl is one checkpoint behind the one the program resumes from. The next
runner, holding the run folder's lock, first writes what the last attempt left unsaid, with
`"replayed": true`, so its `start` says where the program really continues (`resumed_from`),
and the console's epochs, ETA and "epochs lost" start from there. foldwatch's own trainer
keeps the same promise itself (docs/metrics-log.md, `epoch`).
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from console.runner.nnunet_log import STAMP, NnunetLogParser
from console.runner.sources import Events, newest_match
from contracts.jsonio import iter_jsonl

RESUMABLE = ("latest", "final")     # what nnU-Net's --c and resumed_from continue from


@dataclass
class LastAttempt:
    """The last attempt's part of metrics.jsonl: what its runner did announce."""
    since: float | None = None          # t of its `start`; None: no earlier attempt
    checkpoints: list[dict] = field(default_factory=list)
    epochs: set[int] = field(default_factory=set)
    last_epoch: int | None = None
    ema_before: float | None = None     # the EMA its nnU-Net log parser started from


def last_attempt(metrics: Path) -> LastAttempt:
    last, ema = LastAttempt(), None
    try:
        for ev in iter_jsonl(metrics):
            name = ev.get("event")
            if name == "start" and isinstance(ev.get("t"), (int, float)):
                last = LastAttempt(since=ev["t"], ema_before=ema)
            elif name == "checkpoint":
                last.checkpoints.append(ev)
            elif name == "epoch" and isinstance(ev.get("epoch"), int):
                last.epochs.add(ev["epoch"])
                last.last_epoch = ev["epoch"]
                if isinstance(ev.get("ema_dice"), (int, float)):
                    ema = ev["ema_dice"]
    except OSError:
        pass
    return last


def _stamped_lines(folder_glob: str, since: float) -> list[tuple[float, str]]:
    """Lines nnU-Net logged after `since`, in time order, from every training log of the fold
    folder: one per process, so a retry with fewer workers wrote a second one; two starts in
    the same second share one, and the earlier attempt's lines are older than `since`."""
    lines: list[tuple[float, str]] = []
    for folder in glob.glob(folder_glob):
        for log in Path(folder).glob("training_log_*.txt"):
            try:
                if log.stat().st_mtime < since:
                    continue
                text = log.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                m = STAMP.match(line)
                if m is None:
                    continue        # nnU-Net's unstamped lines (plans, banners) carry no events
                try:
                    when = datetime.fromisoformat(m.group(1)).timestamp()  # local, as written
                except ValueError:
                    continue
                if when > since:
                    lines.append((when, line))
    lines.sort(key=lambda x: x[0])
    return lines


def nnunet_missing(last: LastAttempt, folder_glob: str) -> Events:
    """The checkpoints nnU-Net logged during the last attempt after those its runner
    announced, and the epochs they make resumable that were never announced (an epoch event
    only follows its checkpoint; epochs after the resume point are redone, and announced
    then)."""
    if last.since is None:
        return []
    parser = NnunetLogParser(ema=last.ema_before)
    derived: Events = []
    for _, line in _stamped_lines(folder_glob, last.since):
        derived += [ev for ev in parser.feed(line) if ev[0] in ("checkpoint", "epoch")]
    derived += parser.flush(ended=True)
    logged = [(f["kind"], f["epoch"], f["path"]) for n, f in derived if n == "checkpoint"]
    announced = [(c.get("kind"), c.get("epoch"), c.get("path")) for c in last.checkpoints]
    if logged[:len(announced)] != announced:
        return []       # not the log that attempt was read from: better nothing than a guess
    resume = max((f["epoch"] for n, f in derived if n == "checkpoint"
                  and f["kind"] in RESUMABLE), default=None)
    out: Events = []
    seen = 0
    for name, fields in derived:
        if name == "checkpoint":
            seen += 1
            if seen > len(announced):
                out.append((name, {**fields, "replayed": True}))
        elif (resume is not None and fields["epoch"] < resume
              and fields["epoch"] not in last.epochs):
            out.append((name, {**fields, "replayed": True}))
    return out


def glob_missing(last: LastAttempt, pattern: str) -> Events:
    """The command kind's checkpoint glob: a newest file written after the last announced
    checkpoint of the last attempt (whose event, written after the file was seen, is never
    older than it). Its epoch is the live rule's: epochs the last attempt announced."""
    if last.since is None:
        return []
    newest = newest_match(pattern)
    if newest is None:
        return []
    path, mtime = newest
    if mtime <= max([last.since] + [c["t"] for c in last.checkpoints
                                    if isinstance(c.get("t"), (int, float))]):
        return []
    epoch = None if last.last_epoch is None else last.last_epoch + 1
    return [("checkpoint", {"kind": "latest", "epoch": epoch, "path": path, "replayed": True})]
