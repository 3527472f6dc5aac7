"""Readers-writer lock on an experiment's plans: `plan` rewrites them, `preprocess` reads one.

Each process already holds its own stage folder's run lock (one `plan`, one `preprocess-<c>`
at a time). This lock serialises the two kinds across folders: `plan` (exclusive) waits
for running preprocesses, and a `preprocess` (shared; several configurations at once) waits
for a running `plan`, so no cache is built from a plan that changes under it.
"""

from __future__ import annotations

import fcntl
import os
import sys
from contextlib import contextmanager
from typing import Iterator

from trainer.runtime.folders import make_folder

LOCK_NAME = ".lock"   # a dot name: no reader of plans/*.json sees it


@contextmanager
def plans_lock(plans_dir, *, exclusive: bool, log=None) -> Iterator[None]:
    path = make_folder(plans_dir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            other = "a running preprocess" if exclusive else "a running plan"
            print(f"{plans_dir}: waiting for {other} to finish", file=sys.stderr, flush=True)
            if log is not None:
                log.event("waiting", reason=f"{other} holds {path}")
            fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)    # drops the lock
