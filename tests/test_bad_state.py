"""Damaged console/state.json (the state-file cases of the bad-input table): no traceback, a
loud message, no second trainer for a live run, and nothing changed where we only read.

One live stand-in trainer holds fold 0's run lock for the whole module; the other runs have
completed logs. Whatever the state file says, fold 0 must be adopted, never launched again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest

from console.engine.core import Engine
from console.store.statefile import StateFile, load_state
from contracts.experiment import load_experiment
from contracts.jsonio import EventWriter
from contracts.runlock import holder
from engine_helpers import FAKE, REPO, cpu_sampler, use_fake_trainer, write_experiment

NO_STAGES = {"evaluate": False, "find_best": False, "postprocess": False, "predict_test": False}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An experiment whose fold 0 is being trained by a live process (holding its run lock)."""
    tmp = tmp_path_factory.mktemp("badstate")
    mp = pytest.MonkeyPatch()
    use_fake_trainer(mp, tmp, {"2d/0": {"then": "hang", "at": 0}})
    exp = load_experiment(write_experiment(tmp, folds=(0, 1), pipeline=NO_STAGES))
    lay = exp.layout
    for name, kind in (("plan", "stage"), ("preprocess-2d", "stage"), ("2d/1", "fold")):
        run_dir = lay.stage_dir(name) if kind == "stage" else lay.fold_dir("2d", 1)
        with EventWriter(run_dir / "metrics.jsonl") as w:
            w.write("start", stage=name, pid=1, host="x")
            w.write("end", status="completed", error=None, exit_code=0)
    live = subprocess.Popen([sys.executable, str(FAKE), "train", "--experiment", str(exp.source),
                             "--configuration", "2d", "--fold", "0"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while holder(lay.fold_dir("2d", 0)) is None:
        assert live.poll() is None and time.monotonic() < deadline, "stand-in did not start"
        time.sleep(0.05)
    try:
        yield exp, live
    finally:
        live.kill()
        live.wait()
        mp.undo()


def _good_state(exp, live) -> dict:
    ct = psutil.Process(live.pid).create_time()
    done = {"state": "completed", "wanted": True, "restarts": 0, "total_restarts": 0}
    return {"version": 2, "runs": {
        "plan": done, "preprocess-2d": done, "2d/1": done,
        "2d/0": {"state": "running", "wanted": True, "device": "cpu0", "pid": live.pid,
                 "create_time": ct, "restarts": 1, "total_restarts": 1}}}


def _j(obj) -> bytes:
    return json.dumps(obj).encode()


def _with(exp, live, **run0) -> bytes:
    s = _good_state(exp, live)
    s["runs"]["2d/0"].update(run0)
    return _j(s)


GOOD = object()          # stands for a valid state naming the live trainer
CASES = {   # name: (state.json bytes or None = missing, state.json.prev bytes, source expected)
    "garbage bytes": (b"\x00\xff\xfe\x81garbage\x00", None, "rediscovered"),
    "empty file": (b"", None, "rediscovered"),
    "truncated JSON": ("truncated", None, "rediscovered"),
    "restarts is 'many'": (lambda e, l: _with(e, l, restarts="many"), None, "rediscovered"),
    "run record is a list": (lambda e, l: _j({"version": 2, "runs": {"2d/0": [1, 2]}}), None,
                             "rediscovered"),
    "pid is text": (lambda e, l: _with(e, l, pid="1234"), None, "rediscovered"),
    "unknown version": (lambda e, l: _j({**_good_state(e, l), "version": 99}), None,
                        "rediscovered"),
    "runs missing": (_j({"version": 2}), None, "rediscovered"),
    "top level is a list": (_j([1, 2, 3]), None, "rediscovered"),
    "damaged, previous copy good": (b"{\"version\": 2, \"ru", GOOD, "prev"),
    "damaged, previous copy damaged too": (b"[[[", b"\x00\x01", "rediscovered"),
    "missing, previous copy good": (None, GOOD, "prev"),
}


def _materialise(spec, exp, live) -> bytes | None:
    if spec is GOOD:
        return _j(_good_state(exp, live))
    if spec == "truncated":
        return _j(_good_state(exp, live))[:40]
    return spec(exp, live) if callable(spec) else spec


def _put(path, data: bytes | None) -> None:
    if data is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_state_is_said_loudly_and_never_launches_a_second_trainer(world, case):
    exp, live = world
    lay = exp.layout
    lay.console_dir.mkdir(parents=True, exist_ok=True)
    for p in lay.console_dir.glob("state.json*"):
        p.unlink()
    lay.console_events.unlink(missing_ok=True)
    spec, prev_spec, source = CASES[case]
    data, prev = _materialise(spec, exp, live), _materialise(prev_spec, exp, live)
    _put(lay.state, data)
    _put(lay.state.with_name("state.json.prev"), prev)
    before = {p.name: p.read_bytes() for p in lay.console_dir.iterdir()}

    loaded = load_state(lay.state)
    assert loaded.source == source and loaded.notice
    # A read-only console (foldwatch status): the message, and not one byte changed.
    with Engine(exp, read_only=True, sampler=cpu_sampler()) as ro:
        snap = ro.poll()
        assert any("state.json" in n for n in snap.notices), snap.notices
        assert {r.key: r.state for r in snap.runs}["2d/0"] == "running"
    assert {p.name: p.read_bytes() for p in lay.console_dir.iterdir()} == before

    # The controlling console: says so, adopts the live trainer, launches nothing.
    eng = Engine(exp, sampler=cpu_sampler())
    try:
        snap = eng.poll()
        run = eng.runs["2d/0"]
        assert run.handle is not None and run.handle.pid == live.pid
        acts = [(d.action, d.run_key) for d in eng.decisions.recent]
        assert ("state", None) in acts and not any(a == "launch" for a, _ in acts), acts
        assert any("state.json" in n for n in snap.notices)
        assert {r.key: r.state for r in snap.runs} == {
            "plan": "completed", "preprocess-2d": "completed", "2d/0": "running",
            "2d/1": "completed"}
    finally:
        eng.close()
    assert live.poll() is None
    kept = list(lay.console_dir.glob("state.json.damaged-*"))
    if data is not None and source != "state":        # the damaged bytes are kept, not lost
        assert [p.read_bytes() for p in kept] == [data]
    assert load_state(lay.state).source == "state"     # and a good state was written


def test_status_on_damaged_state_prints_a_message_not_a_traceback(world):
    exp, live = world
    lay = exp.layout
    lay.state.write_bytes(b"{\"version\": 2, \"runs\": {\"2d/0\": [\"oops\"]}}")
    lay.state.with_name("state.json.prev").unlink(missing_ok=True)
    before = lay.state.read_bytes()
    env = dict(os.environ, FOLDWATCH_NO_NVML="1")
    out = subprocess.run([sys.executable, "-m", "console.clients.cli", "status", str(exp.source)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "Traceback" not in out.stderr + out.stdout
    text = " ".join((out.stdout + out.stderr).split())
    assert "state.json is damaged" in text and "re-discovered" in text, text
    assert lay.state.read_bytes() == before


def test_stale_temp_files_of_killed_writers_are_removed_only_ours_only_old(world, tmp_path,
                                                                          monkeypatch):
    use_fake_trainer(monkeypatch, tmp_path)
    exp = load_experiment(write_experiment(tmp_path, folds=(0,), pipeline=NO_STAGES))
    lay = exp.layout
    lay.console_dir.mkdir(parents=True)
    ckpt = lay.checkpoints("2d", 0)
    ckpt.mkdir(parents=True)
    old = [lay.console_dir / ".state.json.0123abcd.tmp", ckpt / ".latest.pt.deadbeef.tmp"]
    young = lay.console_dir / ".state.json.89abcdef.tmp"
    foreign = [lay.console_dir / ".notes.tmp", lay.console_dir / "state.json.0123abcd.tmp",
               ckpt / ".latest.pt.XYZ.tmp"]
    for p in old + [young] + foreign:
        p.write_text("x")
    for p in old + foreign:
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    eng = Engine(exp, sampler=cpu_sampler(), hold=True)
    try:
        assert not any(p.exists() for p in old)
        assert young.exists() and all(p.exists() for p in foreign)
        assert any(d.action == "cleanup" for d in eng.decisions.recent)
    finally:
        eng.close()


def test_previous_good_copy_is_kept_on_every_save(tmp_path):
    sf = StateFile(tmp_path / "state.json")
    sf.save({"version": 2, "runs": {"a": {"state": "queued"}}})
    assert not sf.prev.exists()
    sf.save({"version": 2, "runs": {"a": {"state": "running"}}})
    assert json.loads(sf.prev.read_text())["runs"]["a"]["state"] == "queued"
    assert json.loads(sf.path.read_text())["runs"]["a"]["state"] == "running"
