"""A selected run's details for the detail screen (queries clients send the supervisor), and
the stderr the watchdog quotes when a process left no `end` event."""

from __future__ import annotations

import os

from console.engine.runstate import Run
from contracts.layout import run_files


def stderr_tail(run: Run, lines: int = 40, since: int = 0) -> list[str]:
    """The last `lines` lines of the run's stderr.log written after byte `since` (reads at
    most the last 64 KiB)."""
    try:
        with open(run_files(run.job.run_dir)["stderr"], "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(since if since <= size else 0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-lines:]


def checkpoints(run: Run) -> list[tuple[str, float]]:
    """(path, mtime) of the run's checkpoints, by name."""
    out = []
    try:
        for p in sorted(run_files(run.job.run_dir)["checkpoints"].iterdir()):
            if p.suffix == ".pt":
                out.append((str(p), p.stat().st_mtime))
    except OSError:
        pass
    if not out:                 # nnU-Net's and commands' checkpoints, as their events named them
        for path in sorted(set(run.metrics.checkpoints.values())):
            try:
                out.append((path, os.stat(path).st_mtime))
            except OSError:
                pass
    return out
