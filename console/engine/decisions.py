"""The engine's decision log: every launch, restart, give-up and why, in console/events.jsonl.

Appended with single `os.write` calls on an O_APPEND descriptor. A write that fails (disk
full, read-only file system) keeps the line in memory and is retried on the next `flush()`,
finishing a partly written line first: the file never gets a torn line.
"""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path

from console.store import faults
from console.protocol.model import Decision
from contracts.jsonio import dumps

KEEP = 500   # decisions kept in memory for the front ends; the file keeps all
MAX_PENDING = 10_000   # lines kept while the disk is full (the oldest go first beyond that)


class DecisionLog:
    def __init__(self, path: Path, write: bool = True) -> None:
        self.path = Path(path)
        self.recent: deque[Decision] = deque(maxlen=KEEP)
        self.write = write
        self._fd: int | None = None
        self._pending: deque[bytes] = deque(maxlen=MAX_PENDING)
        self.error: OSError | None = None      # the last write failure, None once written

    def record(self, t: float, run_key: str | None, action: str, reason: str, **extra) -> Decision:
        d = Decision(t=t, run_key=run_key, action=action, reason=reason)
        self.recent.append(d)
        if self.write:
            rec = {"t": time.time(), "event": "decision", "run": run_key, "action": action,
                   "reason": reason, "clock": t, **extra}
            self._pending.append((dumps(rec) + "\n").encode("utf-8"))
            self.flush()
        return d

    def flush(self) -> bool:
        """Write what is pending; False (and `error` set) when the disk refused."""
        try:
            if self._fd is None and self._pending:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            while self._pending:
                faults.point("write:events")
                data = self._pending[0]
                n = os.write(self._fd, data)
                if n < len(data):
                    self._pending[0] = data[n:]     # the rest of this line comes first
                    continue
                self._pending.popleft()
        except OSError as e:
            self.error = e
            return False
        self.error = None
        return True

    @property
    def pending(self) -> int:
        return len(self._pending)

    def ingest(self, ev: dict) -> None:
        """A decision read back from the file (read-only consoles, restarts)."""
        if ev.get("event") != "decision":
            return
        t = ev.get("clock", ev.get("t"))
        self.recent.append(Decision(t=float(t) if isinstance(t, (int, float)) else 0.0,
                                    run_key=ev.get("run"), action=str(ev.get("action")),
                                    reason=str(ev.get("reason"))))

    def close(self) -> None:
        if self._fd is not None:
            self.flush()
            os.close(self._fd)
            self._fd = None


class Decider:
    """How every phase records a decision: `decide(run, action, reason, **extra)`. An action
    a client asked for names it (`by`) while `requester` is set."""

    def __init__(self, log: DecisionLog, clock) -> None:
        self.log, self.clock = log, clock
        self.requester: str | None = None

    def __call__(self, run, action: str, reason: str, **extra) -> None:
        if self.requester is not None:
            extra.setdefault("by", self.requester)
        self.log.record(self.clock(), run.key if run is not None else None, action, reason,
                        **extra)
