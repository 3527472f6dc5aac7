"""Start-up of a supervising engine: what state.json says, checked against the living.

A run recorded as launching or active is adopted when its process (or the run folder's lock
holder) is alive, else judged from its log; a run with no record is re-discovered from its
folder (docs/console-engine.md, "Adoption at start-up").
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from console.engine import supervision, team
from console.engine.runstate import ACTIVE, FINAL
from console.engine.runstate import RunState as S
from console.store.statefile import VERSION
from contracts import runlock

if TYPE_CHECKING:
    from console.engine.core import Engine


def state_of(eng: "Engine") -> dict:
    sel = eng.selected_gpus
    return {"version": VERSION, "engine_pid": os.getpid(), "experiment": str(eng.exp.source),
            "watchdog_enabled": eng.watchdog_enabled,
            "selected_gpus": sorted(sel) if sel is not None else None,
            "runs": {k: r.to_record() for k, r in eng.runs.items()}}


# -- start-up ---------------------------------------------------------------------------------
def _counters(run, rec: dict) -> None:
    run.restarts = rec.get("restarts") or 0
    run.total_restarts = rec.get("total_restarts") or 0
    run.attempts = rec.get("attempts") or 0
    run.overrides = dict(rec.get("overrides") or {})
    run.message = rec.get("message")
    run.user_stopped = bool(rec.get("user_stopped", False))
    run.run_now = bool(rec.get("run_now", False))     # the user's wish survives a re-attach


def _adopt(eng: "Engine", run, handle, now: float, how: str,
           starts_before: int | None = None) -> None:
    """`starts_before`: the `start` events before this process's (a process still starting
    has written none yet); by default its own is the last one."""
    run.handle, run.launch = handle, None
    run.starts_at_launch = (max(0, run.metrics.starts - 1) if starts_before is None
                            else starts_before)
    run.restore(S.RUNNING if run.metrics.starts > run.starts_at_launch else S.STARTING)
    run.wanted, run.user_stopped = True, False
    run.last_activity = now
    run.mark_checkpoint()
    where = f" on {run.device}" if run.device else ""
    eng.decide(run, "adopt", f"{how} {handle.pid or handle.job_id}{where}")


def adopt_holder(eng: "Engine", run, now: float) -> bool | None:
    """A live process holding the run folder's lock: adopted (True); held but not adoptable,
    e.g. another host or an unreadable record (None); not held (False)."""
    held = runlock.holder(run.job.run_dir)
    if held is None:
        return False
    handle = eng.backend.adopt(run.key, held, run.job.run_dir) if held else None
    if handle is None:
        who = f"pid {held.get('pid', '?')} on {held.get('host', '?')}" if held else "a process"
        run.message = (f"{run.job.run_dir} is held by {who} (run lock); not starting a second "
                       "process")
        return None
    run.device = run.device or (held.get("device") if isinstance(held.get("device"), str) else None)
    _adopt(eng, run, handle, now, "adopted the process holding the run folder: pid")
    return True


def _resolve_active(eng: "Engine", run, rec: dict, now: float) -> None:
    """A run recorded as launching or active: adopt it, or judge what happened to it."""
    launch = rec.get("launch")
    run.starts_at_launch = (launch["starts"] if launch else max(0, run.metrics.starts - 1))
    run.device = rec.get("device")
    handle = eng.backend.adopt(run.key, rec, run.job.run_dir)
    if handle is not None:
        _adopt(eng, run, handle, now, "re-adopted live process")
        return
    got = adopt_holder(eng, run, now)
    if got is None:                    # held, not adoptable (yet): the scheduler tries again
        run.state = S.QUEUED
        return
    if got:
        return
    token = launch.get("token") if launch else None
    if token and rec.get("pid") is None and rec.get("job_id") is None:
        # started, but killed before its pid was saved: it may still be importing torch,
        # with no lock and no log yet; its environment carries the launch's token
        handle = eng.backend.find_launch(run.key, token, run.job.run_dir)
        if handle is not None:
            _adopt(eng, run, handle, now, f"adopted launch attempt {launch['attempt']} "
                   "(started before the last supervisor died, found by its token): pid",
                   starts_before=launch["starts"])
            return
    if launch and rec.get("pid") is None and run.metrics.starts <= launch["starts"]:
        run.state, run.launch = S.QUEUED, None
        eng.decide(run, "requeue", f"launch attempt {launch['attempt']} was interrupted before "
                   "the trainer started (no process, no log); queued again, no restart counted")
        return
    supervision.on_exit(eng, run, None, now, unattended=True)


def restore(eng: "Engine", saved: dict, autostart: bool, now: float) -> None:
    """Start-up of a controlling console: adopt live runs, judge the dead, queue the rest.
    Whatever state.json says, a run folder held by a live process is adopted, never launched."""
    for key, run in eng.runs.items():
        if team.foreign(eng, key):
            team.refresh(eng, run, now)            # someone's run: watched, never launched
            continue
        rec = saved["runs"].get(key) or {}
        _counters(run, rec)
        state = rec.get("state")
        if state in ACTIVE:
            run.wanted = True
            run.restore(state)
            _resolve_active(eng, run, rec, now)
            continue
        run.restore(S.QUEUED)
        if adopt_holder(eng, run, now):
            continue
        if state == S.STOPPED and run.user_stopped:
            run.restore(S.STOPPED)                 # the user's wish outlives the console
            run.wanted = bool(rec.get("wanted", True))
        elif state == S.STOPPED and autostart and rec.get("wanted", True):
            run.wanted, run.message = True, None   # stopped by a signal, not by the user
            eng.decide(run, "resume", "stopped in an earlier session (not by the user); "
                       "queued again")
        elif state in FINAL:
            run.restore(state)
            run.wanted = bool(rec.get("wanted", True))
        elif state in (S.QUEUED, S.BACKOFF):
            run.wanted = autostart or bool(rec.get("wanted", True))
        elif state == S.WAITING:               # for disk space: keep waiting for it
            run.restore(S.WAITING)
            run.wanted = True
            run.wait_for_free, run.wait_reason = rec.get("wait_for_free"), rec.get("wait_reason")
        else:
            _from_logs(eng, run, autostart, now)


def _from_logs(eng: "Engine", run, autostart: bool, now: float) -> None:
    """No record: what the run folder says (an `end` event, or a start without one)."""
    end = run.metrics.end
    if end is not None and end.get("status") == "completed" and end.get("exit_code", 0) == 0:
        run.restore(S.COMPLETED)
        run.wanted = True
    elif run.metrics.starts and end is None and autostart:
        run.restore(S.RUNNING)                     # started, no end, no holder: killed
        run.wanted, run.starts_at_launch = True, run.metrics.starts - 1
        supervision.on_exit(eng, run, None, now, unattended=True)
    else:
        run.wanted = autostart


def apply_saved(eng: "Engine", saved: dict) -> None:
    """Read-only view: states as the controlling console saved them, else from the logs."""
    from console.backends.base import Handle
    eng.watchdog_enabled = saved.get("watchdog_enabled", eng.watchdog_enabled)
    for key, run in eng.runs.items():
        rec = saved["runs"].get(key)
        if rec:
            _counters(run, rec)
            run.restore(rec.get("state") or S.QUEUED)
            run.wanted = bool(rec.get("wanted", True))
            run.device = rec.get("device")
            run.handle = Handle.from_record(key, rec)
            continue
        end = run.metrics.end
        held = runlock.holder(run.job.run_dir)
        if held is not None:
            run.restore(S.RUNNING)
            run.wanted, run.message = True, "running (its run lock is held); no console state"
        elif end is not None and end.get("status") in FINAL:
            run.restore(end["status"])
            run.wanted = True
        elif run.metrics.starts and not eng.layout.state.exists():
            team.refresh(eng, run, time.time())   # a team split: no console has state.json
        elif run.metrics.starts:
            run.restore(S.STOPPED)
            run.wanted = True
            run.message = "no console state; process not supervised"
        else:
            run.restore(S.QUEUED)
            run.wanted = False
