"""One process per run folder: an exclusive lock that a trainer (or stage) holds for its life.

Defence in depth behind the console's crash-safe launches: whatever console/state.json
says, a second process for the same run folder cannot take the lock and exits with
`exitcodes.BUSY`; the console reads the holder record and adopts that process instead.

The lock is `flock` on `<run_dir>/run.lock` (released by the kernel when the process dies,
however it dies; on NFSv4 Linux maps it onto POSIX locks, so it holds across hosts). The
file's content is the holder record, JSON: pid, create_time (psutil), host, started, argv.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from contracts import exitcodes
from contracts.errors import UserError

LOCK_NAME = "run.lock"
# Set by the supervisor in every process it starts (console.engine.launching): the run folder
# to lock first thing, and the launch's token (found in the environment of a process whose
# pid the supervisor died before saving; kept in the holder record).
RUN_DIR_ENV = "FOLDWATCH_RUN_DIR"
LAUNCH_TOKEN_ENV = "FOLDWATCH_LAUNCH_TOKEN"
_early: dict[str, "RunLock"] = {}      # realpath of a lock file -> the lock taken early
# `probe` holds a shared lock for an instant; an exclusive try that meets one is tried again
# for this long before the lock counts as held (a prober descheduled on a loaded machine)
PROBE_WAIT_S = 0.5


class RunBusy(UserError):
    """Another live process holds this run folder (exit 73): adopt it, never start a second."""

    exit_code = exitcodes.BUSY

    def __init__(self, run_dir: Path, holder: dict | None, lock: Path | None = None) -> None:
        self.run_dir, self.holder = Path(run_dir), holder or {}
        who = f"pid {self.holder.get('pid', '?')} on {self.holder.get('host', '?')}"
        super().__init__(f"{self.run_dir} is already in use by {who} "
                         f"(lock {lock or self.run_dir / LOCK_NAME}); not starting a second "
                         "process for the same run. Stop that one first, or let the console "
                         "adopt it.")


def lock_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / LOCK_NAME


def _own_record(extra: dict | None) -> dict:
    try:
        import psutil
        ct = psutil.Process(os.getpid()).create_time()
    except Exception:       # psutil missing or /proc unreadable: pid + host still identify it
        ct = None
    rec = {"pid": os.getpid(), "create_time": ct, "host": socket.gethostname(),
           "started": time.time(), "argv": sys.argv[:8]}
    if os.environ.get(LAUNCH_TOKEN_ENV):
        rec["token"] = os.environ[LAUNCH_TOKEN_ENV]
    rec.update(extra or {})
    return rec


class RunLock:
    """`with RunLock(run_dir, role="train"):` — raises RunBusy when another process holds it."""

    def __init__(self, run_dir: str | Path, **record: object) -> None:
        self.run_dir = Path(run_dir)
        self.path = lock_path(run_dir)
        self.record = record
        self._fd: int | None = None

    @classmethod
    def at(cls, path: str | Path, **record: object) -> "RunLock":
        """The same lock on another file (a supervisor's, a team member's claim)."""
        lock = cls(Path(path).parent, **record)
        lock.path = Path(path)
        return lock

    def acquire(self) -> None:
        early = _early.pop(os.path.realpath(self.path), None)
        if early is not None and early._fd is not None:
            # this process locked the folder first thing (lock_early): keep that lock and
            # complete its holder record
            self._fd, early._fd = early._fd, None
            data = json.dumps(_own_record({**early.record, **self.record})).encode()
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, data, 0)
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # the record first (psutil's import is slow): a console probing the lock between the
        # flock and the write sees an empty record and cannot adopt the holder yet
        data = json.dumps(_own_record(self.record)).encode()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_exclusive(fd)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise RunBusy(self.run_dir, read_holder_record(self.path), self.path) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        self._fd = fd

    def release(self) -> None:
        """Unlock; the file stays (deleting it would race a second acquirer)."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)          # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_exclusive(fd: int) -> None:
    """flock LOCK_EX without waiting on a holder, but past a `probe`: its shared lock lasts
    an instant, so the try is repeated for PROBE_WAIT_S before the lock counts as held (a
    supervisor or trainer starting while a client probes must not think it has a twin)."""
    deadline = time.monotonic() + PROBE_WAIT_S
    pause = 0.002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as e:
            if (e.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN)
                    or time.monotonic() >= deadline):
                raise
        time.sleep(pause)
        pause = min(0.05, pause * 2)


def lock_early(**record: object) -> None:
    """Lock $FOLDWATCH_RUN_DIR now, before a trainer's slow imports (torch takes seconds), so
    a second process for the same run is refused (RunBusy, exit 73) from the first moment;
    the RunLock the process takes later on the same folder continues this one."""
    run_dir = os.environ.get(RUN_DIR_ENV)
    if not run_dir:
        return                         # started by hand, not by a supervisor
    lock = RunLock(run_dir, **record)
    lock.acquire()
    _early[os.path.realpath(lock.path)] = lock


def read_holder_record(path: Path) -> dict | None:
    try:
        text = Path(path).read_text(encoding="utf-8")
        rec = json.loads(text)
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def probe(path: str | Path) -> dict | None:
    """The live holder's record of the lock file `path`, or None when nobody holds it.

    Probes with a shared, non-blocking lock on a read-only descriptor: creates nothing, so a
    read-only console can call it. A held lock with an unreadable record returns {}.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                return read_holder_record(path) or {}
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def holder(run_dir: str | Path) -> dict | None:
    """The live holder's record of a run folder's lock, or None (see `probe`)."""
    return probe(lock_path(run_dir))
