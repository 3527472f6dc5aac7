"""The run state machine, the backend handle record and the shared snapshot diff (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.backends.base import Handle
from console.clients.changes import diff
from console.kinds.jobs import Job
from console.protocol.model import Decision, RunView, Snapshot
from console.engine.runstate import TRANSITIONS, IllegalTransition, Run, RunState


def _run() -> Run:
    return Run(Job("2d/0", "fold", "train", Path("/nonexistent/fold_0"), "2d", 0))


def test_every_state_has_its_transitions_and_illegal_ones_raise():
    assert set(TRANSITIONS) == set(RunState)
    run = _run()
    run.state = "starting"
    run.state = RunState.RUNNING
    assert run.state == "running" and f"{run.state}" == "running" and str(run.state) == "running"
    with pytest.raises(IllegalTransition, match="running -> starting"):
        run.state = RunState.STARTING
    run.state = RunState.BACKOFF
    with pytest.raises(IllegalTransition):
        run.state = RunState.COMPLETED          # a backoff never completes without a process
    run.restore(RunState.COMPLETED)             # start-up sets what state.json says
    assert run.to_record()["state"] == "completed"


def test_illegal_transition_outside_tests_is_recorded_not_raised(monkeypatch):
    monkeypatch.setenv("FOLDWATCH_STRICT_STATES", "0")
    run = _run()
    run.state = RunState.COMPLETED              # queued -> completed is not a transition
    assert run.state == RunState.COMPLETED and "queued -> completed" in run.bugs[0]


def test_handle_record_round_trip_and_garbage():
    h = Handle("2d/0", 123, 1700000000.5, job_id="42", host="node1")
    back = Handle.from_record("2d/0", h.to_record())
    assert (back.pid, back.create_time, back.job_id, back.host, back.adopted) == (
        123, 1700000000.5, "42", "node1", True)
    assert Handle.from_record("k", {"pid": None, "create_time": None}) is None
    assert Handle.from_record("k", {"pid": "many", "create_time": [1]}) is None
    assert Handle.from_record("k", {"job_id": 77}).job_id == "77"       # batch job, no pid yet
    assert Handle.from_record("k", {"pid": True, "create_time": 1.0}) is None


def _snap(runs, decisions=(), finished=False, succeeded=False, notices=()):
    return Snapshot(time=0.0, runs=list(runs), gpus=[], cpu_mode=True, cpu_slots=2,
                    nvml_message=None, watchdog_enabled=True, read_only=False,
                    finished=finished, succeeded=succeeded, decisions=list(decisions),
                    notices=list(notices))


def test_diff_reports_states_restarts_new_decisions_and_the_end():
    a = _snap([RunView("2d/0", "fold", "2d/0", "queued")], [Decision(1.0, None, "x", "old")])
    b = _snap([RunView("2d/0", "fold", "2d/0", "failed", restarts=1, message="exit 3")],
              [Decision(1.0, None, "x", "old"), Decision(2.0, "2d/0", "fail", "exit 3")],
              finished=True)
    first = diff(None, a)
    assert [(c.kind, c.before, c.notable) for c in first] == [("state", None, False)]
    kinds = [(c.kind, c.text, c.notable) for c in diff(a, b)]
    # the watchdog's decision is said when made; "restarted" only once it really restarted
    assert kinds == [("restart", "2d/0 exited: exit 3; the watchdog restarts it after a backoff",
                      True),
                     ("state", "2d/0 failed: exit 3", True),
                     ("decision", "fail 2d/0: exit 3", False),
                     ("finished", "pipeline finished: some runs did not complete", True)]
    assert diff(b, b) == []


def test_a_notice_is_said_once_even_when_its_numbers_change():
    a = _snap([], notices=["waiting for disk space (2d/0): 3.1 MB free on /r"])
    b = _snap([], notices=["waiting for disk space (2d/0): 2.9 MB free on /r",
                           "cannot write console/state.json: No space left on device"])
    assert [c.text for c in diff(None, a)] == [a.notices[0]]
    assert [c.text for c in diff(a, b)] == [b.notices[1]]
