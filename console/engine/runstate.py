"""One job's live record in the engine, and the run state machine (every legal transition).

State changes go through `Run.state = ...`, which checks the table below: an illegal
transition is a bug. Tests (FOLDWATCH_STRICT_STATES=1, set by tests/conftest.py) raise it;
a user's console keeps going and the engine logs a `bug` decision instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum

from console.backends.base import Handle
from console.kinds.jobs import Job
from console.engine.runmetrics import RunMetrics
from console.store.tailer import Tailer
from contracts.layout import run_files
from contracts.origin import origin_label, read_origin


class RunState(str, Enum):
    QUEUED = "queued"          # waiting for dependencies or a free slot
    STARTING = "starting"      # launched; no `start` event yet
    RUNNING = "running"
    STALLED = "stalled"        # no new event for stall_timeout_s: being stopped to restart
    BACKOFF = "backoff"        # crashed; restarted when the delay is over
    WAITING = "waiting"        # for disk space (trainer exit 74) or a device; no restart counted
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"

    def __str__(self) -> str:          # "running", not "RunState.RUNNING", in messages
        return self.value

    __format__ = str.__format__


S = RunState
ACTIVE = frozenset({S.STARTING, S.RUNNING, S.STALLED})      # a process exists
FINAL = frozenset({S.COMPLETED, S.FAILED, S.STOPPED})
# QUEUED after an exit: GPU lost, scratch, launch interrupted, BUSY holder gone
_EXITED = {S.COMPLETED, S.FAILED, S.STOPPED, S.BACKOFF, S.QUEUED, S.WAITING}

TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    S.QUEUED: frozenset({S.STARTING, S.FAILED, S.STOPPED, S.WAITING}),   # FAILED: cannot start
    S.STARTING: frozenset({S.RUNNING, S.STALLED, *_EXITED}),
    S.RUNNING: frozenset({S.STALLED, *_EXITED}),
    S.STALLED: frozenset({S.RUNNING, *_EXITED}),
    S.BACKOFF: frozenset({S.QUEUED, S.STOPPED}),
    S.WAITING: frozenset({S.QUEUED, S.STOPPED}),
    S.COMPLETED: frozenset({S.QUEUED}),            # a stage run again, restart from scratch
    S.FAILED: frozenset({S.QUEUED}),
    S.STOPPED: frozenset({S.QUEUED}),
}


class IllegalTransition(RuntimeError):
    """A state change the table does not allow: a bug in the engine."""


def strict() -> bool:
    return os.environ.get("FOLDWATCH_STRICT_STATES", "") not in ("", "0")


@dataclass
class Run:
    job: Job
    _state: RunState = RunState.QUEUED
    wanted: bool = False           # queued by autostart or launch(); False = not launched
    run_now: bool = False          # "run X now": ahead of the queue once its inputs are done
    handle: Handle | None = None
    device: str | None = None
    restarts: int = 0              # counts toward max_restarts; reset after a new checkpoint
    total_restarts: int = 0
    attempts: int = 0              # launches, ever (the intent record names the attempt)
    launch: dict | None = None     # intent persisted before the process starts, see launching
    resuming: bool = False         # the last launch continues from a checkpoint (its kind said)
    user_stopped: bool = False     # the user stopped it: a new console keeps it stopped
    ckpt_mark: int | None = None   # latest checkpoint epoch when launched/adopted
    wait_for_free: int | None = None   # WAITING for disk: bytes free needed to retry
    wait_reason: str | None = None     # ... and the trainer's own words about it
    backoff_until: float | None = None
    overrides: dict = field(default_factory=dict)   # batch_size / grad_accumulation refit
    message: str | None = None
    stop_requested: bool = False
    stalled: bool = False
    gpu_lost: bool = False
    scratch_pending: bool = False
    term_deadline: float | None = None   # SIGKILL the group after this
    starts_at_launch: int = 0
    stderr_at_launch: int = 0      # stderr.log size at launch: this attempt's part follows
    last_activity: float | None = None
    metrics: RunMetrics = field(default_factory=RunMetrics)
    tailer: Tailer | None = None
    bugs: list[str] = field(default_factory=list)   # illegal transitions seen (non-strict)
    cluster_stops: int = 0         # cluster stops in a row without a new latest.pt (walltime...)
    cluster_ckpt: float | None = None   # latest.pt's mtime at the last cluster stop
    origin: str | None = None      # brought in by `foldwatch import`: "HOST, DATE" (origin.json)

    @property
    def key(self) -> str:
        return self.job.key

    @property
    def state(self) -> RunState:
        return self._state

    @state.setter
    def state(self, new: RunState | str) -> None:
        new = RunState(new)
        if new != self._state and new not in TRANSITIONS[self._state]:
            msg = f"{self.key}: illegal state transition {self._state} -> {new}"
            if strict():
                raise IllegalTransition(msg)
            self.bugs.append(msg)
        self._state = new

    def restore(self, state: RunState | str) -> None:
        """Set the state read from state.json or the logs (start-up, read-only views)."""
        self._state = RunState(state)

    def mark_checkpoint(self) -> None:
        """Remember the newest `latest` checkpoint so far: a newer one resets the restarts."""
        self.ckpt_mark = self.metrics.latest_checkpoint_epoch

    def reset_log(self) -> None:
        """Read the run's folder from the start (again): its log, and where it came from."""
        self.metrics = RunMetrics()
        self.tailer = Tailer(run_files(self.job.run_dir)["metrics"], collapse_iter=True)
        self.origin = origin_label(read_origin(self.job.run_dir))

    def to_record(self) -> dict:
        rec = {"state": self.state.value, "wanted": self.wanted, "device": self.device,
               "restarts": self.restarts, "total_restarts": self.total_restarts,
               "overrides": self.overrides, "message": self.message,
               "backoff_until": self.backoff_until, "attempts": self.attempts,
               "launch": self.launch, "user_stopped": self.user_stopped,
               "wait_for_free": self.wait_for_free, "wait_reason": self.wait_reason,
               "run_now": self.run_now}
        rec.update(Handle.empty_record() if self.handle is None else self.handle.to_record())
        return rec
