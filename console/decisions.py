"""The engine's decision log: every launch, restart, give-up and why, in console/events.jsonl."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from console.model import Decision
from contracts.jsonio import EventWriter

KEEP = 500   # decisions kept in memory for the front ends; the file keeps all


class DecisionLog:
    def __init__(self, path: Path, write: bool = True) -> None:
        self.path = Path(path)
        self.recent: deque[Decision] = deque(maxlen=KEEP)
        self._writer = EventWriter(self.path) if write else None

    def record(self, t: float, run_key: str | None, action: str, reason: str, **extra) -> Decision:
        d = Decision(t=t, run_key=run_key, action=action, reason=reason)
        self.recent.append(d)
        if self._writer is not None:
            self._writer.write("decision", run=run_key, action=action, reason=reason,
                               clock=t, **extra)
        return d

    def ingest(self, ev: dict) -> None:
        """A decision read back from the file (read-only consoles, restarts)."""
        if ev.get("event") != "decision":
            return
        t = ev.get("clock", ev.get("t"))
        self.recent.append(Decision(t=float(t) if isinstance(t, (int, float)) else 0.0,
                                    run_key=ev.get("run"), action=str(ev.get("action")),
                                    reason=str(ev.get("reason"))))

    def for_run(self, key: str) -> list[Decision]:
        return [d for d in self.recent if d.run_key == key]

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
