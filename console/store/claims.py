"""Several consoles, one experiment (the team split, docs/slurm.md): per-run claim locks.

`foldwatch up EXP --runs 2d/0,2d/1` claims only those runs: console/claims/<key>.lock, an
flock held for the console's life with a holder record (pid, host), instead of the one
console lock for the whole experiment. Runs claimed elsewhere are shown read-only, their
state read from their metrics.jsonl and run.lock. A pipeline stage is claimed by whichever
console first sees all its inputs complete; a stage already completed or held elsewhere is
never started again.
"""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

from contracts.layout import Layout
from contracts.runlock import RunBusy, RunLock, holder, probe
from contracts.errors import ConfigError


class ClaimBusy(ConfigError):
    """Another team member's supervisor has claimed one of the runs asked for."""


def console_id(runs: list[str]) -> str:
    """This console's name in console/consoles/: host + the runs it claims."""
    digest = hashlib.sha1(",".join(sorted(runs)).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"


class Claims:
    """The run claims this console holds."""

    def __init__(self, layout: Layout, runs: list[str]) -> None:
        self.layout = layout
        self.runs = list(runs)
        self.id = console_id(runs)
        self._held: dict[str, RunLock] = {}

    def acquire(self) -> None:
        """Claim every --runs run, or none: ClaimBusy names who holds which."""
        busy = []
        for key in self.runs:
            if not self.try_claim(key):
                h = probe(self.layout.claim(key)) or {}
                busy.append(f"{key} (console pid {h.get('pid', '?')} on {h.get('host', '?')})")
        if busy:
            self.release()
            raise ClaimBusy("already claimed by another console: " + ", ".join(busy)
                              + ". Pick other --runs, or watch with `foldwatch status`.")

    def try_claim(self, key: str) -> bool:
        if key in self._held:
            return True
        if probe(self.layout.claim(key)) is not None:
            return False        # held: asked without the wait past probes acquire() has
        lock = RunLock.at(self.layout.claim(key), role="console", run=key, console=self.id)
        try:
            lock.acquire()
        except RunBusy:                            # another console has it
            return False
        self._held[key] = lock
        return True

    def holds(self, key: str) -> bool:
        return key in self._held

    def release(self) -> None:
        for lock in self._held.values():
            lock.release()
        self._held.clear()


def foreign_state(run, layout: Layout, now: float, stall_s: float,
                  waiting_for: list[str] = ()) -> tuple[str, str | None]:
    """(state, message) of a run another console (or nobody) owns, from its files only;
    `waiting_for`: a stage's inputs that are not complete yet."""
    m = run.metrics
    end = m.end
    if end is not None and end.get("status") == "completed" and end.get("exit_code", 0) == 0:
        return "completed", None
    start = getattr(m, "last_start", None) or {}     # host of the last start, when kept
    h = holder(run.job.run_dir)
    if h is not None:
        return "running", f"on {h.get('host') or '?'} (pid {h.get('pid', '?')}), another console"
    claim = probe(layout.claim(run.key))
    fresh = m.last_t is not None and end is None and time.time() - m.last_t < stall_s
    if fresh:
        return "running", f"on {start.get('host') or '?'}, another console"
    if end is not None and end.get("status") == "failed":
        why = end.get("message") or (end.get("error") or "").strip().splitlines()[-1:] or [""]
        return "failed", f"failed under another console: {why if isinstance(why, str) else why[0]}"
    if claim is not None:
        return "queued", f"claimed by the console on {claim.get('host') or '?'}"
    if end is not None and end.get("status") == "stopped":
        return "stopped", "stopped; no console claims it"
    if run.job.kind == "stage" and waiting_for:
        more = f" (+{len(waiting_for) - 3})" if len(waiting_for) > 3 else ""
        return "queued", (f"waits for {', '.join(waiting_for[:3])}{more}; runs on the first "
                          "console that sees its inputs complete (folds trained elsewhere "
                          "arrive with `foldwatch import`)")
    if run.job.kind == "fold":
        return "queued", ("not this console's (--runs): another console trains it, or "
                          "`foldwatch import` brings it in")
    return "queued", "not claimed here (another console's run)"
