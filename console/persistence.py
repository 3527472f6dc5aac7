"""console/state.json: what the controlling console knows about its runs, and adoption at
start-up (a console that starts later re-adopts live runs by pid + process start time)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from console import supervision
from console.runstate import ACTIVE, FINAL
from console.runstate import RunState as S
from contracts.jsonio import atomic_write_json

if TYPE_CHECKING:
    from console.engine import Engine

VERSION = 1


def load_state(path: Path) -> dict:
    """The saved state, or an empty one when the file is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {"version": VERSION, "runs": {}}
    if not isinstance(data, dict) or not isinstance(data.get("runs"), dict):
        return {"version": VERSION, "runs": {}}
    return data


class StateFile:
    """Writes state.json only when its content changed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._last: str | None = None

    def save(self, data: dict) -> bool:
        text = json.dumps(data, sort_keys=True)
        if text == self._last:
            return False
        atomic_write_json(self.path, data)
        self._last = text
        return True


def state_of(eng: "Engine") -> dict:
    sel = eng.selected_gpus
    return {"version": VERSION, "engine_pid": os.getpid(), "experiment": str(eng.exp.source),
            "watchdog_enabled": eng.watchdog_enabled,
            "selected_gpus": sorted(sel) if sel is not None else None,
            "runs": {k: r.to_record() for k, r in eng.runs.items()}}


def restore(eng: "Engine", saved: dict, autostart: bool, now: float) -> None:
    """Start-up of a controlling console: adopt live runs, judge the dead, queue the rest."""
    for key, run in eng.runs.items():
        rec = saved["runs"].get(key) or {}
        run.restarts = int(rec.get("restarts") or 0)
        run.total_restarts = int(rec.get("total_restarts") or 0)
        run.overrides = dict(rec.get("overrides") or {})
        run.message = rec.get("message")
        state = rec.get("state")
        if state in ACTIVE and rec.get("pid") and rec.get("create_time"):
            run.wanted = True
            run.restore(state)
            run.starts_at_launch = max(0, run.metrics.starts - 1)
            handle = eng.backend.adopt(key, rec)
            if handle is not None:
                run.handle, run.device = handle, rec.get("device")
                run.restore(S.RUNNING if run.metrics.starts else S.STARTING)
                run.launched_at = run.last_activity = now
                eng.decide(run, "adopt", f"re-adopted live process {handle.pid} on {run.device}")
                continue
            supervision.on_exit(eng, run, None, now, unattended=True)
            continue
        if state == S.STOPPED and autostart and rec.get("wanted", True):
            # `foldwatch up` again after a stop: carry on where the run left off
            run.restore(S.QUEUED)
            run.wanted, run.message = True, None
            eng.decide(run, "resume", "stopped in an earlier session; queued again")
            continue
        if state in FINAL:
            run.restore(state)
            run.wanted = bool(rec.get("wanted", True))
            continue
        if state in (S.QUEUED, S.BACKOFF):
            run.restore(S.QUEUED)
            run.wanted = autostart or bool(rec.get("wanted", True))
            continue
        end = run.metrics.end
        if end is not None and end.get("status") == "completed" and end.get("exit_code", 0) == 0:
            run.restore(S.COMPLETED)
            run.wanted = True
        else:
            run.restore(S.QUEUED)
            run.wanted = autostart


def apply_saved(eng: "Engine", saved: dict) -> None:
    """Read-only view: states as the controlling console saved them, else from the logs."""
    from console.backend import Handle
    eng.watchdog_enabled = bool(saved.get("watchdog_enabled", eng.watchdog_enabled))
    for key, run in eng.runs.items():
        rec = saved["runs"].get(key)
        if rec:
            run.restore(rec.get("state") or S.QUEUED)
            run.wanted = bool(rec.get("wanted", True))
            run.device = rec.get("device")
            run.restarts = int(rec.get("restarts") or 0)
            run.total_restarts = int(rec.get("total_restarts") or 0)
            run.message = rec.get("message")
            run.overrides = dict(rec.get("overrides") or {})
            run.handle = Handle.from_record(key, rec)
            continue
        end = run.metrics.end
        if end is not None and end.get("status") in FINAL:
            run.restore(end["status"])
            run.wanted = True
        elif run.metrics.starts:
            run.restore(S.STOPPED)
            run.wanted = True
            run.message = "no console state; process not supervised"
        else:
            run.restore(S.QUEUED)
            run.wanted = False
