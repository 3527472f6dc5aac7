"""The supervisor: one process per experiment that owns its supervision.

It holds `supervisor.lock` for its whole life, ticks the engine (launches, watchdog, queue,
pipeline stages), runs the bridges (exporter, notifications, progress figures), rewrites
`snapshot.json` on every tick and answers the clients' requests between ticks. No window
needs to stay open: clients come and go (docs/console-engine.md, "The supervisor").
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Callable

from console.engine.core import Engine
from console.protocol import presence as pr
from console.protocol.channel import Inbox
from console.protocol.model import ACTIVE_STATES, Snapshot
from console.protocol.snapshots import write_snapshot
from console.store import disk
from console.store.claims import console_id
from console.supervisor import registry
from console.supervisor.requests import handle
from contracts import exitcodes
from contracts.experiment import Experiment, load_experiment
from contracts.runlock import RunBusy, RunLock

TICK_S = 0.5              # engine ticks (and snapshots) per second: 2
REQUEST_POLL_S = 0.1      # how often the request folder is looked at between ticks


class Supervisor:
    def __init__(self, experiment: Path | Experiment, *, runs: list[str] | None = None,
                 hold: bool = False, exit_when_idle: bool = False,
                 chaos: float | None = None, foreground: bool = False,
                 on_tick: Callable[[Snapshot], None] | None = None,
                 stop_on_exit: bool = False, tick_s: float = TICK_S) -> None:
        self.exp = (experiment if isinstance(experiment, Experiment)
                    else load_experiment(experiment))
        self.runs = runs
        self.home = self.exp.layout.supervisor_home(console_id(runs) if runs else None)
        self.hold, self.exit_when_idle, self.chaos = hold, exit_when_idle, chaos
        self.foreground = foreground      # `up --headless`: ends with the pipeline, no linger
        self.on_tick = on_tick
        self.stop_on_exit = stop_on_exit  # a signal stops the runs before supervision ends
        self.finished_snapshot: Snapshot | None = None    # foreground: the last tick's
        self.tick_s = tick_s
        self.engine: Engine | None = None
        self.bridges = None               # console.bridges.hub.Bridges, while supervising
        self.started = time.time()
        self._create_time = _create_time()    # its process's, in every snapshot it writes
        self._stop_reason: str | None = None  # why supervision ended, for the last snapshot
        self._wake = threading.Event()
        self._signal: int | None = None
        self._down: str | None = None     # why supervision ends (a `down` request)
        self._idle_since: float | None = None
        self._lock: RunLock | None = None
        self._write_error: str | None = None

    # -- life -------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the experiment's supervisor lock; RunBusy when another supervisor has it."""
        self.home.dir.mkdir(parents=True, exist_ok=True)
        lock = RunLock.at(self.home.lock, role="supervisor", experiment=self.exp.experiment,
                          file=str(self.exp.source))
        lock.acquire()
        self._lock = lock

    def run(self) -> int:
        """Supervise until `down`, a signal, or (finished and idle) the linger; exit code."""
        try:
            self.acquire()
        except RunBusy as e:
            print(f"foldwatch supervisor: {e}", flush=True)
            return exitcodes.BUSY
        self._say(f"supervising {self.exp.experiment} ({self.exp.source}) as pid {os.getpid()}")
        old = self._install_signals()
        code = 0
        try:
            from console.bridges.notify_urls import check_urls
            check_urls(self.exp)        # a URL Apprise cannot use: said before anything starts
            self.engine = Engine(self.exp, runs=self.runs, hold=self.hold,
                                 autostart=not self.hold, chaos_every_s=self.chaos)
            from console.bridges.hub import Bridges
            self.bridges = Bridges(self.exp, active=True, console_dir=self.home.dir)
            registry.register(self.home, self.exp)
            try:
                code = self._loop(Inbox(self.home.requests, self.home.replies))
            finally:
                self.bridges.close()
        finally:
            self._finish()
            for s, h in old.items():
                signal.signal(s, h)
        return code

    def _loop(self, inbox: Inbox) -> int:
        eng = self.engine
        self._serve(inbox)          # asked while no supervisor ran (e.g. `foldwatch stop`)
        while True:
            snap = eng.poll()
            if self.bridges is not None:
                self.bridges.tick(snap)    # before publishing: the bridges' notices go with it
            self._publish(snap)
            if self.on_tick is not None:
                self.on_tick(snap)
            ended = self._ended(snap)
            if ended is not None:
                return ended
            deadline = time.monotonic() + self.tick_s
            while not self._wake.is_set():
                if self._serve(inbox):
                    break                  # an action: show its effect on the next tick now
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wake.wait(min(REQUEST_POLL_S, left))
            if self._signal is not None or self._down is not None:
                self._wake.clear()
                return self._leave()
            inbox.sweep()

    def _serve(self, inbox: Inbox) -> bool:
        """Carry out waiting requests; True when one of them acted."""
        acted = False
        for req in inbox.pending():
            ok, value, error, act = handle(self.engine, req, self.ask_down)
            inbox.answer(req, ok=ok, value=value, error=error)
            acted = acted or act
        return acted

    def _ended(self, snap: Snapshot) -> int | None:
        """An exit code when supervision is over by itself (finished), else None."""
        if self.exit_when_idle:            # a temporary supervisor (`foldwatch stop`)
            if any(r.handle is not None for r in self.engine.runs):
                return None
            self._stop_reason = "no run left to stop"
            return 0
        if not snap.finished or any(r.state in ACTIVE_STATES for r in snap.runs):
            self._idle_since = None
            return None
        if self.foreground:
            self.finished_snapshot = snap
            self._stop_reason = "finished"
            return 0 if snap.succeeded else 1
        now = time.monotonic()
        if self._idle_since is None:
            self._idle_since = now
            linger = self.exp.supervisor.linger_s
            self._say(f"the experiment is finished; the supervisor exits after {linger:g}s "
                      "without work (supervisor.linger_s)")
        if now - self._idle_since >= self.exp.supervisor.linger_s:
            pr.write_intent(self.home, False, "finished",
                            "the experiment finished; the supervisor lingered and exited")
            self._stop_reason = "finished"
            return 0
        return None

    def _leave(self) -> int:
        """A `down` request or a signal: supervision ends, the runs keep training (with
        `stop_on_exit` they are stopped first, resumable: `foldwatch up` continues them)."""
        if self.stop_on_exit and self._signal is not None:
            self._say("stopping every run (--stop-on-exit)...")
            self.engine.stop_all(final=False)
            deadline = time.monotonic() + self.exp.watchdog.grace_period_s + 10
            while time.monotonic() < deadline:
                snap = self.engine.poll()
                self._publish(snap)
                if not any(r.handle is not None for r in self.engine.runs):
                    break
                time.sleep(0.2)
        alive = [r.key for r in self.engine.runs if r.handle is not None]
        why = self._down or f"signal {signal.Signals(self._signal).name}"
        if self.foreground and self._down is None:    # Ctrl-C on `up --headless`: not wanted
            pr.write_intent(self.home, False, "interrupted",
                            f"foldwatch up --headless ended by {why}")
        self._stop_reason = why
        self._say(f"supervision ends ({why}); {len(alive)} run(s) keep going"
                  + (f": {', '.join(alive)}" if alive else ""))
        return 0 if self._down else 1

    # -- what clients see -----------------------------------------------------------------
    def info(self, ended: float | None = None, reason: str | None = None) -> dict:
        rec = self._lock.record if self._lock else {}
        return {"pid": os.getpid(), "host": socket.gethostname(), "started": self.started,
                "create_time": self._create_time, "heartbeat": time.time(), "tick_s": self.tick_s,
                "experiment": self.exp.experiment, "file": str(self.exp.source),
                "runs": self.runs, "hold": self.hold, "ended": ended, "end_reason": reason,
                **{k: v for k, v in rec.items() if k == "role"}}

    def _publish(self, snap: Snapshot, ended: float | None = None,
                 reason: str | None = None) -> None:
        try:
            write_snapshot(self.home.snapshot, snap, self.info(ended, reason))
        except OSError as e:
            why = e.strerror or str(e)
            if disk.is_no_space(e):
                why += f"; {disk.free_text(self.exp.layout.root)}"
            if self._write_error != why:
                self._say(f"cannot write {self.home.snapshot}: {why}; clients see an old view")
            self._write_error = why
        else:
            self._write_error = None

    def _finish(self) -> None:
        reason = self._stop_reason or "stopped"
        if self.engine is not None:
            try:
                snap = self.engine.poll()
                self._publish(snap, ended=time.time(), reason=reason)
            finally:
                self.engine.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _say(self, text: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}", flush=True)

    # -- signals --------------------------------------------------------------------------
    def _install_signals(self) -> dict:
        def leave(signum, frame):
            self._signal = signum
            self._wake.set()
        old = {s: signal.signal(s, leave) for s in (signal.SIGINT, signal.SIGTERM)}
        old[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        return old

    def ask_down(self, why: str) -> None:
        """End supervision after this request (the runs keep training)."""
        self._down = why
        self._wake.set()


def _create_time() -> float | None:
    try:
        import psutil
        return psutil.Process(os.getpid()).create_time()
    except Exception:
        return None
