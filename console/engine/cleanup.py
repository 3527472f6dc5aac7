"""Tidying that loses nothing: stale temp files of writers killed mid-write
(contracts.jsonio's `.<name>.<8 hex>.tmp`, removed by a controlling console at start-up: only
that pattern, only older than a minute), and a run folder moved aside, never deleted, when a
run restarts from scratch."""

from __future__ import annotations

import os
import re
import time
from datetime import datetime
from pathlib import Path

from console.engine.runstate import RunState as S
from contracts.layout import run_files

STALE_TEMP_S = 60.0
_TEMP = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


def clean_stale_temps(folders, older_than_s: float = STALE_TEMP_S) -> list[Path]:
    """Remove `.<name>.<8 hex>.tmp` files (contracts.jsonio's temp names) older than a minute
    from `folders`: left by writers killed mid-write. Only that pattern, only old ones."""
    removed, now = [], time.time()
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for e in entries:
            if not _TEMP.match(e.name):
                continue
            try:
                if e.is_file(follow_symlinks=False) and now - e.stat().st_mtime > older_than_s:
                    os.unlink(e.path)
                    removed.append(Path(e.path))
            except OSError:
                continue
    return removed


def temp_folders(console_dirs, runs) -> list[Path]:
    """console/ (and this supervisor's own folder in a team split), every run folder and its
    checkpoints/."""
    out = list(dict.fromkeys(Path(d) for d in console_dirs))
    for run in runs:
        out += [run.job.run_dir, run_files(run.job.run_dir)["checkpoints"]]
    return out


def move_aside(run, decide) -> str:
    """Rename the run folder to `<name>.old-<stamp>` (never deleted) and queue it afresh."""
    folder = run.job.run_dir
    said = f"{run.key} queued from scratch"
    if folder.exists():
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        target = folder.with_name(f"{folder.name}.old-{stamp}")
        n = 1
        while target.exists():
            target = folder.with_name(f"{folder.name}.old-{stamp}-{n}")
            n += 1
        folder.rename(target)
        decide(run, "scratch", f"moved {folder.name} aside to {target.name}; "
                "starting from scratch")
        said += f"; its old folder is kept as {target.name}"
    run.reset_log()
    run.overrides, run.restarts, run.message = {}, 0, None
    run.wanted, run.state, run.user_stopped = True, S.QUEUED, False
    return said
