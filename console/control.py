"""Who controls an experiment, for read-only consoles and `foldwatch status`."""

from __future__ import annotations

from pathlib import Path


def controller(lock_path: Path) -> str | None:
    """'pid 1234' of the console holding the experiment's lock, None when no console does.

    Probes the lock without keeping it and creates nothing in an experiment that has no
    console folder yet.
    """
    lock_path = Path(lock_path)
    if not lock_path.parent.is_dir():
        return None
    from console.lock import ConsoleLock
    lock = ConsoleLock(lock_path)
    if not lock.is_held_elsewhere():
        return None
    return f"the console with pid {lock.holder()}"
