"""Fault injection for crash-safety tests: `FOLDWATCH_FAULT=<point>[:<n>]:<action>`.

At the n-th time (1-based, default 1) the code passes `fault_point(point)`, the process
does `action`: `kill` (SIGKILL itself: no handler, no end event, as a power cut or the OOM
killer would) or `enospc` (raise OSError ENOSPC, as a full disk would). Unset: no cost
beyond one dictionary look-up. Points: `checkpoint-write`, `after-checkpoint` (latest.pt
and its event written, the `epoch` event not yet).
"""

from __future__ import annotations

import errno
import os
import signal

_counts: dict[str, int] = {}


def fault_point(point: str) -> None:
    spec = os.environ.get("FOLDWATCH_FAULT")
    if not spec:
        return
    parts = spec.split(":")
    if parts[0] != point:
        return
    nth, action = (int(parts[1]), parts[2]) if len(parts) == 3 else (1, parts[-1])
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] != nth:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
