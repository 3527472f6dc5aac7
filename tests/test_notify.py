"""notify.command: one message per event, also after a console restart; timeouts, failures."""

from __future__ import annotations

import json
import sys
import time

import yaml

from console.engine.decisions import DecisionLog
from console.bridges.notify import Notifier
from console.store.statefile import VERSION
from contracts.experiment import load_experiment
from contracts.jsonio import atomic_write_json, iter_jsonl

APPEND = "import sys; d = sys.stdin.read(); open(sys.argv[1], 'a').write(d.replace('\\n', ' ') + '\\n')"


def _exp(tmp_path, command, **notify):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({
        "experiment": "n", "dataset": "data", "results": "results",
        "configurations": {"2d": {}}, "folds": [0, 1],
        "notify": {"command": command, **notify}}))
    exp = load_experiment(path)
    exp.layout.console_dir.mkdir(parents=True)
    return exp


def _messages(path):
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _wait(cond, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _state(exp, **states):
    atomic_write_json(exp.layout.state, {"version": VERSION, "runs": {k.replace("_", "/"): {"state": s}
                                                                for k, s in states.items()}})


def test_each_event_notified_exactly_once_across_console_restarts(tmp_path):
    inbox = tmp_path / "inbox.jsonl"
    exp = _exp(tmp_path, [sys.executable, "-c", APPEND, str(inbox)], disk_free_gb=0)
    log = DecisionLog(exp.layout.console_events)          # what the engine writes
    log.record(1.0, "2d/0", "launch", "gpu0")
    log.record(2.0, "2d/0", "give_up", "crashed (exit code 1); gave up after 5 restarts")
    _state(exp, **{"2d_0": "failed", "2d_1": "running"})
    n = Notifier(exp, interval_s=0.05)
    n.start()
    assert _wait(lambda: len(_messages(inbox)) == 1)
    log.record(3.0, "2d/1", "fail", "dataset error (exit 3, never restarted): case_004")
    assert _wait(lambda: len(_messages(inbox)) == 2)
    n.close()
    # console restart: nothing is sent twice; the finish that follows is sent once
    _state(exp, **{"2d_0": "failed", "2d_1": "failed"})
    for _ in range(2):
        n = Notifier(exp, interval_s=0.05)
        n.start()
        assert _wait(lambda: len(_messages(inbox)) >= 3)
        n.close()
    msgs = _messages(inbox)
    assert [m["event"] for m in msgs] == ["watchdog_gave_up", "run_failed", "experiment_finished"]
    assert msgs[0]["run"] == "2d/0" and "gave up" in msgs[0]["reason"]
    assert msgs[2]["failed"] == ["2d/0", "2d/1"] and msgs[2]["experiment"] == "n"
    sent = [e for e in iter_jsonl(exp.layout.notify_log) if e.get("event") == "notify"]
    assert [e["status"] for e in sent] == ["sent"] * 3


def test_disk_low_once_and_failing_or_hanging_commands_are_logged(tmp_path):
    exp = _exp(tmp_path, [sys.executable, "-c", "import time; time.sleep(30)"],
               timeout_s=0.5, disk_free_gb=10**9)            # every disk is "nearly full"
    n = Notifier(exp)
    t0 = time.monotonic()
    n.tick()
    assert time.monotonic() - t0 < 10                         # the timeout, not the 30 s
    n2 = Notifier(exp)                                         # restart: no second disk_low
    n2.tick()
    logged = [e for e in iter_jsonl(exp.layout.notify_log) if e.get("event") == "notify"]
    assert [(e["kind"], e["status"]) for e in logged] == [("disk_low", "failed")]
    assert "timed out" in logged[0]["error"]
    bad = _exp(tmp_path / "b", [str(tmp_path / "no-such-program")], disk_free_gb=10**9)
    Notifier(bad).tick()
    (e,) = [e for e in iter_jsonl(bad.layout.notify_log) if e.get("event") == "notify"]
    assert e["status"] == "failed" and "no-such-program" in e["error"]


def test_a_team_split_console_notifies_from_its_own_folder(tmp_path):
    inbox = tmp_path / "inbox.jsonl"
    exp = _exp(tmp_path, [sys.executable, "-c", APPEND, str(inbox)], disk_free_gb=0)
    own = exp.layout.team_console_dir("gpu07-1a2b3c4d")        # `foldwatch up --runs ...`
    own.mkdir(parents=True)
    DecisionLog(own / "events.jsonl").record(1.0, "2d/1", "fail", "dataset error (exit 3)")
    Notifier(exp, console_dir=own).tick()
    (msg,) = _messages(inbox)
    assert msg["event"] == "run_failed" and msg["run"] == "2d/1"
    assert (own / "notify.json").exists() and not exp.layout.notify_state.exists()
