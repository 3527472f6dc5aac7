"""A client of the experiment's supervisor: `console.protocol.model.EngineControl` over the
snapshot file and the request channel. The console, `foldwatch status`/`stop`, the browser
view and the headless follower all use it; none of them runs an engine.

The view is the supervisor's last snapshot. When no supervisor is alive the client says so
in the snapshot ("not supervised since 14:03 ...") and checks every recorded process
itself: a run whose process is gone is shown `dead`, never `running`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from console.protocol import attach, channel
from console.protocol import presence as pr
from console.protocol.codec import decode
from console.protocol.model import (ACTIVE_STATES, EpochPoint, Snapshot, SupervisorView)
from console.protocol.snapshots import SnapshotReader
from contracts.errors import UserError
from contracts.layout import SupervisorHome

ACTION_TIMEOUT_S = 5.0       # a live supervisor answers within its request poll (0.1 s)
START_TIMEOUT_S = 60.0       # ... one it had to start first answers after its start-up
RESTART_EVERY_S = 30.0       # how often a client tries to restart a supervisor that is gone


class ReadOnlyView(UserError):
    """An action asked of a read-only client."""


class SupervisorClient:
    def __init__(self, exp_path: Path, home: SupervisorHome, *, kind: str = "client",
                 read_only: bool = False, restart: bool = True,
                 runs: list[str] | None = None) -> None:
        self.exp_path = Path(exp_path)
        self.home = home
        self.kind = kind
        self.read_only = read_only
        self.restart = restart            # start the supervisor again when it is gone
        self.runs = runs
        self._reader = SnapshotReader(home.snapshot)
        self._tried_restart = 0.0
        self.presence: pr.Presence = pr.Presence("never")
        self.started_by_me: int | None = None      # pid of a supervisor this client started
        self.start_refused: str | None = None      # why the last start was refused or failed

    # -- the view -------------------------------------------------------------------------
    def poll(self) -> Snapshot:
        got = self._reader.read()
        self.presence = pr.presence(self.home, supervisor=got.supervisor, written=got.written)
        if (self.restart and not self.presence.alive
                and time.monotonic() - self._tried_restart > RESTART_EVERY_S):
            self._tried_restart = time.monotonic()
            self._ensure(explicit=False)
            got = self._reader.read()
        snap = got.snapshot if got.snapshot is not None else _empty()
        snap.read_only = self.read_only
        intent = pr.read_intent(self.home)
        snap.supervisor = self._view(got.supervisor, intent)
        if not self.presence.alive:
            snap.notices.insert(0, pr.describe(self.presence, intent))
            _check_processes(snap)
        if got.problem:
            snap.notices.append(f"cannot read the supervisor's snapshot: {got.problem}")
        return snap

    def _view(self, sup: dict, intent: dict) -> SupervisorView:
        p = self.presence
        return SupervisorView(state=p.state, pid=p.pid, host=p.host, started=p.started,
                              heartbeat=sup.get("heartbeat"), since=p.since, reason=p.reason,
                              text=pr.describe(p, intent))

    def _ensure(self, explicit: bool) -> bool:
        """Start the supervisor when it is gone (and, unless `explicit`, wanted); True when
        one is alive afterwards."""
        self.start_refused = None
        try:
            p, started = attach.ensure(self.exp_path, self.home, explicit=explicit,
                                       by=self.kind, runs=self.runs)
        except UserError as e:
            self.start_refused = str(e)
            return False
        self.presence = p
        if started:
            self.started_by_me = p.pid
        return p.alive

    # -- asking the supervisor ----------------------------------------------------------
    def request(self, action: str, args: dict | None = None, *, acting: bool = True,
                timeout_s: float | None = None):
        """Send one request and wait for the supervisor's answer: its value, or raise
        UserError with its reason (or with why no answer came)."""
        if acting and self.read_only:
            raise ReadOnlyView("this view is read-only (--read-only): it cannot act")
        started = False
        if not pr.presence(self.home).alive:
            if not acting:
                raise UserError(pr.describe(pr.presence(self.home)))
            started = self._ensure(explicit=True)
            if not started:
                raise UserError(self.start_refused or "no supervisor is running and none "
                                f"could be started; see {self.home.log}")
        client = {"pid": os.getpid(), "host": socket.gethostname(), "kind": self.kind}
        try:
            rid = channel.send(self.home.requests, action, args, client=client,
                               read_only=self.read_only)
        except OSError as e:
            raise UserError(f"cannot ask the supervisor: writing to {self.home.requests} "
                            f"failed: {e.strerror or e}. Free some space (or get write "
                            "access) and try again.") from None
        wait = timeout_s or (START_TIMEOUT_S if started else ACTION_TIMEOUT_S)
        reply = channel.wait_reply(self.home.replies, rid, wait,
                                   still_listening=lambda: pr.presence(self.home).alive)
        if reply is None:
            p = pr.presence(self.home)
            if p.alive:
                raise UserError(f"the supervisor (pid {p.pid}) has not answered within "
                                f"{wait:.0f}s; the request stays queued and is carried out "
                                "when it gets to it")
            raise UserError(f"the supervisor stopped before answering: "
                            f"{pr.describe(p, pr.read_intent(self.home))}")
        if not reply.ok:
            raise UserError(reply.error or "refused")
        return reply.value

    def _act(self, action: str, **args) -> str:
        try:
            return str(self.request(action, args))
        except UserError as e:
            return str(e)

    # -- EngineControl --------------------------------------------------------------------
    def launch(self, configurations: list[str], folds: list[int],
               gpus: list[int] | None = None) -> str:
        return self._act("launch", configurations=configurations, folds=folds, gpus=gpus)

    def stop(self, key: str, final: bool = True) -> str:
        return self._act("stop", key=key, final=final)

    def kill(self, key: str) -> str:
        return self._act("kill", key=key)

    def resume(self, key: str) -> str:
        return self._act("resume", key=key)

    def restart_from_scratch(self, key: str) -> str:
        return self._act("restart_from_scratch", key=key)

    def set_watchdog(self, enabled: bool) -> str:
        return self._act("set_watchdog", enabled=enabled)

    def select_gpus(self, gpus: list[int] | None) -> str:
        return self._act("select_gpus", gpus=gpus)

    def run_stage_now(self, stage: str) -> str:
        return self._act("run_stage_now", stage=stage)

    def stop_all(self, final: bool = True) -> str:
        return self._act("stop_all", final=final)

    # -- details of one run (queries: allowed to read-only views) -------------------------
    def _query(self, action: str, tp, empty, **args):
        try:
            value = self.request(action, args, acting=False)
        except UserError:
            return empty
        try:
            return decode(tp, value)
        except (TypeError, ValueError):
            return empty

    def epoch_history(self, key: str) -> list[EpochPoint]:
        return self._query("epoch_history", list[EpochPoint], [], key=key)

    def stderr_tail(self, key: str, lines: int = 40) -> list[str]:
        return self._query("stderr_tail", list[str], [], key=key, lines=lines)

    def checkpoints(self, key: str) -> list[tuple[str, float]]:
        return self._query("checkpoints", list[tuple[str, float]], [], key=key)

    def close(self) -> None:
        """Nothing to release: the supervisor goes on."""


def _empty() -> Snapshot:
    return Snapshot(time=time.time(), runs=[], gpus=[], cpu_mode=True, cpu_slots=0,
                    nvml_message=None, watchdog_enabled=False, read_only=True,
                    finished=False, succeeded=False)


def _check_processes(snap: Snapshot) -> None:
    """No supervisor watches: a recorded process that is gone is not `running`. Its log's
    `end` event says how it ended when it wrote one; else it is `dead` (killed, or its
    machine lost) until a supervisor judges it."""
    from contracts.processes import same_process
    here = socket.gethostname()
    late = max(0.0, time.time() - snap.time)
    for r in snap.runs:
        if r.last_event_age_s is not None:
            r.last_event_age_s += late         # the supervisor measured them back then
        if r.state not in ACTIVE_STATES or r.job:
            continue
        if r.pid and r.host in (None, here) and not same_process(r.pid, r.pid_started or 0.0):
            end = last_end(Path(r.run_dir)) if r.run_dir else None
            if end is not None and end.get("status") in ("completed", "failed", "stopped"):
                r.state = end["status"]
                r.message = (f"ended {end['status']} while no supervisor watched (exit "
                             f"{end.get('exit_code')}); `foldwatch up` takes it from there")
            else:
                r.state = "dead"
                r.message = (f"its process (pid {r.pid}) is gone and no supervisor has judged "
                             "it: `foldwatch up` restarts it from its last checkpoint")
            r.pid = r.eta_s = None
        elif r.pid and r.host not in (None, here):
            r.message = f"on {r.host}: not checked from here (no supervisor)"
    snap.finished = False


def last_end(run_dir: Path) -> dict | None:
    """The `end` event of a run's latest attempt, from the end of its metrics.jsonl."""
    from contracts.layout import METRICS_FILE
    try:
        with open(run_dir / METRICS_FILE, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            lines = f.read().splitlines()
    except OSError:
        return None
    for raw in reversed(lines):
        try:
            ev = json.loads(raw)
        except ValueError:
            continue
        if isinstance(ev, dict) and ev.get("event") in ("end", "start"):
            return ev if ev["event"] == "end" else None
    return None
