"""Is this the process we started? A pid plus its start time (psutil), so a reused pid
never fools the console, a client or the watchdog."""

from __future__ import annotations


def same_process(pid: int, create_time: float) -> bool:
    """The process `pid` exists, is not a zombie and started at `create_time`."""
    import psutil
    try:
        p = psutil.Process(pid)
        if abs(p.create_time() - create_time) > 0.01:
            return False
        return p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False
