"""Who controls an experiment, for read-only consoles and `foldwatch status`."""

from __future__ import annotations

from pathlib import Path


def controller(lock_path: Path) -> str | None:
    """'pid 1234' of the console holding the experiment's lock, None when no console does.

    Probes the lock without keeping it and creates nothing in an experiment that has no
    console folder yet.
    """
    import fcntl
    import os
    lock_path = Path(lock_path)
    try:          # read-only, no O_CREAT: a read-only console changes no byte
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return None                    # no lock file: no console ever held it here
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        from console.store.locks import ConsoleLock
        return f"the console with pid {ConsoleLock.holder_of(lock_path)}"
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def take_control(eng) -> str:
    """A read-only console becomes the controlling one (the lock is free): it takes the
    lock, adopts the live runs from state.json and carries on, as `foldwatch up` would."""
    from console.engine import adoption
    from console.store import statefile
    from console.store.locks import ConsoleBusy, ConsoleLock
    if not eng.read_only:
        return "this console controls the experiment already"
    lock = ConsoleLock(eng.layout.lock)
    try:
        lock.acquire()
    except ConsoleBusy:
        return f"{controller(eng.layout.lock) or 'another console'} controls the experiment; " \
               "quit that console first"
    eng._lock, eng.read_only = lock, False
    eng.layout.console_dir.mkdir(parents=True, exist_ok=True)
    eng.decisions.write = True
    for run in eng.runs.values():      # what the read-only view had; restore() decides anew
        run.handle, run.device = None, None
    loaded = statefile.load_state(eng.layout.state)
    adoption.restore(eng, loaded.data, True, eng.clock())
    eng.decide(None, "control", "a read-only console took control (no console held the lock)")
    eng.save_state()
    adopted = sum(1 for r in eng.runs.values() if r.handle is not None)
    return f"this console now controls the experiment ({adopted} live runs adopted)"
