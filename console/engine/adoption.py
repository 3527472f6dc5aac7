"""Start-up of a supervising engine: what state.json says, checked against the living.

A run recorded as launching or active is adopted when its process (or the run folder's lock
holder, or a process carrying its launch token) is alive, else judged from its log; a run
with no record is re-discovered from its folder (docs/console-engine.md, "Adoption at
start-up"). An offline view (`foldwatch status` where no supervisor ever ran) only shows
what state.json and the folders say.
"""

from __future__ import annotations

import time
from typing import Callable

from console.backends.base import Backend, Handle
from console.engine.actions import import_completed
from console.engine.exits import Adopter, ExitJudge
from console.engine.logs import LogReader
from console.engine.runstate import ACTIVE, FINAL
from console.engine.runstate import RunState as S
from console.engine.runstate import Run
from console.engine.table import RunTable, Settings
from console.engine.team import Team
from contracts import runlock


def _counters(run: Run, rec: dict) -> None:
    run.restarts = rec.get("restarts") or 0
    run.total_restarts = rec.get("total_restarts") or 0
    run.attempts = rec.get("attempts") or 0
    run.overrides = dict(rec.get("overrides") or {})
    run.message = rec.get("message")
    run.user_stopped = bool(rec.get("user_stopped", False))
    run.run_now = bool(rec.get("run_now", False))     # the user's wish survives a re-attach


class StartUp:
    def __init__(self, runs: RunTable, backend: Backend, decide: Callable, adopter: Adopter,
                 exits: ExitJudge, team: Team, logs: LogReader) -> None:
        self.runs, self.backend, self.decide = runs, backend, decide
        self.adopter, self.exits, self.team, self.logs = adopter, exits, team, logs

    def restore(self, saved: dict, autostart: bool, now: float) -> None:
        """Adopt live runs, judge the dead, queue the rest. Whatever state.json says, a run
        folder held by a live process is adopted, never launched."""
        for run in self.runs:
            if self.runs.foreign(run.key):
                self.team.refresh(run, now, self.runs)   # someone's: watched, never launched
                continue
            rec = saved["runs"].get(run.key) or {}
            _counters(run, rec)
            state = rec.get("state")
            if state in ACTIVE:
                run.wanted = True
                run.restore(state)
                self._resolve_active(run, rec, now)
                continue
            run.restore(S.QUEUED)
            if self.adopter.holder(run, now):
                continue
            if run.origin and state != S.COMPLETED and import_completed(run, self.logs, now):
                # brought in by `foldwatch import` while no supervisor ran
                self.decide(run, "import", f"imported ({run.origin}): completed")
                continue
            self._recorded(run, rec, state, autostart, now)

    def _recorded(self, run: Run, rec: dict, state, autostart: bool, now: float) -> None:
        """A run recorded as not active (or not recorded at all)."""
        if state == S.STOPPED and run.user_stopped:
            run.restore(S.STOPPED)                 # the user's wish outlives the supervisor
            run.wanted = bool(rec.get("wanted", True))
        elif state == S.STOPPED and autostart and rec.get("wanted", True):
            run.wanted, run.message = True, None   # stopped by a signal, not by the user
            self.decide(run, "resume", "stopped in an earlier session (not by the user); "
                        "queued again")
        elif state in FINAL:
            run.restore(state)
            run.wanted = bool(rec.get("wanted", True))
        elif state in (S.QUEUED, S.BACKOFF):
            run.wanted = autostart or bool(rec.get("wanted", True))
        elif state == S.WAITING:                   # for disk space: keep waiting for it
            run.restore(S.WAITING)
            run.wanted = True
            run.wait_for_free, run.wait_reason = rec.get("wait_for_free"), rec.get("wait_reason")
        else:
            self._from_logs(run, autostart, now)

    def _resolve_active(self, run: Run, rec: dict, now: float) -> None:
        """A run recorded as launching or active: adopt it, or judge what happened to it."""
        launch = rec.get("launch")
        run.starts_at_launch = (launch["starts"] if launch else max(0, run.metrics.starts - 1))
        run.device = rec.get("device")
        handle = self.backend.adopt(run.key, rec, run.job.run_dir)
        if handle is not None:
            self.adopter.adopt(run, handle, now, "re-adopted live process")
            return
        got = self.adopter.holder(run, now)
        if got is None:                    # held, not adoptable (yet): the scheduler tries again
            run.state = S.QUEUED
            return
        if got:
            return
        token = launch.get("token") if launch else None
        if token and rec.get("pid") is None and rec.get("job_id") is None:
            # started, but killed before its pid was saved: it may still be importing torch,
            # with no lock and no log yet; its environment carries the launch's token
            handle = self.backend.find_launch(run.key, token, run.job.run_dir)
            if handle is not None:
                self.adopter.adopt(run, handle, now, f"adopted launch attempt "
                                   f"{launch['attempt']} (started before the last supervisor "
                                   "died, found by its token): pid",
                                   starts_before=launch["starts"])
                return
        if launch and rec.get("pid") is None and run.metrics.starts <= launch["starts"]:
            run.state, run.launch = S.QUEUED, None
            self.decide(run, "requeue", f"launch attempt {launch['attempt']} was interrupted "
                        "before the trainer started (no process, no log); queued again, no "
                        "restart counted")
            return
        self.exits.on_exit(run, None, now, unattended=True)

    def _from_logs(self, run: Run, autostart: bool, now: float) -> None:
        """No record: what the run folder says (an `end` event, or a start without one)."""
        end = run.metrics.end
        if end is not None and end.get("status") == "completed" and end.get("exit_code", 0) == 0:
            run.restore(S.COMPLETED)
            run.wanted = True
        elif run.metrics.starts and end is None and autostart:
            run.restore(S.RUNNING)                     # started, no end, no holder: killed
            run.wanted, run.starts_at_launch = True, run.metrics.starts - 1
            self.exits.on_exit(run, None, now, unattended=True)
        else:
            run.wanted = autostart


def offline_view(runs: RunTable, team: Team, settings: Settings, saved: dict,
                 state_exists: bool) -> None:
    """No supervisor: the states state.json recorded, else what the run folders say."""
    settings.watchdog_enabled = saved.get("watchdog_enabled", settings.watchdog_enabled)
    for run in runs:
        rec = saved["runs"].get(run.key)
        if rec:
            _counters(run, rec)
            run.restore(rec.get("state") or S.QUEUED)
            run.wanted = bool(rec.get("wanted", True))
            run.device = rec.get("device")
            run.handle = Handle.from_record(run.key, rec)
            continue
        end = run.metrics.end
        if runlock.holder(run.job.run_dir) is not None:
            run.restore(S.RUNNING)
            run.wanted, run.message = True, "running (its run lock is held); no supervisor state"
        elif end is not None and end.get("status") in FINAL:
            run.restore(end["status"])
            run.wanted = True
        elif run.metrics.starts and not state_exists:
            team.refresh(run, time.time(), runs)   # a team split: no supervisor's state.json
        elif run.metrics.starts:
            run.restore(S.STOPPED)
            run.wanted = True
            run.message = "no supervisor state; process not supervised"
        else:
            run.restore(S.QUEUED)
            run.wanted = False
