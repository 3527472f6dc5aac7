"""Disk full is a condition, not a crash: the console keeps its state in memory, retries every
tick and says so with the free space; a trainer's exit 74 waits for space, no restart counted.

The real thing on a 512 KiB tmpfs when running as root (mounted and unmounted here), and the
fault-injection seam (console/faults.py raising OSError(ENOSPC)) everywhere.
"""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest
import yaml

from console.store import faults
from console.engine.core import Engine
from contracts.jsonio import iter_jsonl
from system_helpers import small_disk as tmpfs
from engine_helpers import actions, calls, cpu_sampler, poll_until, use_fake_trainer, write_experiment

NO_STAGES = {"evaluate": False, "find_best": False, "postprocess": False, "predict_test": False}


@pytest.fixture
def small_disk(tmp_path):
    with tmpfs(tmp_path / "disk", 512) as why_not:
        if why_not:
            pytest.skip(f"{why_not}; the fault-injection test covers ENOSPC")
        yield tmp_path / "disk"


def _fill(folder) -> int:
    """Write a ballast file until the disk refuses; its size."""
    n = 0
    with open(folder / "ballast", "wb", buffering=0) as f:
        while True:
            try:
                n += f.write(b"\0" * 4096)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                return n


def test_full_results_disk_is_waited_out_without_restarts(small_disk, tmp_path, monkeypatch):
    use_fake_trainer(monkeypatch, tmp_path, {
        "2d/0": [{"then": "nospace", "at": 1, "wait_full": True, "rate": 0.05}, {"rate": 0.05}],
        "*": {"rate": 0.02}})
    path = write_experiment(tmp_path, folds=(0,), pipeline=NO_STAGES)
    data = yaml.safe_load(path.read_text())
    data["results"] = str(small_disk / "results")
    path.write_text(yaml.safe_dump(data))
    eng = Engine(path, sampler=cpu_sampler())
    try:
        fold = eng.layout.fold_dir("2d", 0)
        poll_until(eng, lambda s: eng.runs["2d/0"].metrics.epoch == 1)
        _fill(small_disk)                       # the trainer meets a full disk and exits 74
        snap = poll_until(eng, lambda s: {r.key: r.state for r in s.runs}["2d/0"] == "waiting")
        _fill(small_disk / "results")           # whatever the console's rotation freed
        for _ in range(3):
            eng.set_watchdog(not eng.settings.watchdog_enabled)    # changes the console must save
            snap = eng.poll()
        text = " | ".join(snap.notices)
        # (state.json may still fit: each save frees the page of the state.json.prev it
        # replaces; the seam test below makes the console's own writes fail for certain)
        assert "waiting for disk space" in text and "MB free on" in text, text
        view = next(r for r in snap.runs if r.key == "2d/0")
        assert view.message.startswith("waiting for disk space") and view.restarts == 0
        for _ in range(5):
            assert eng.poll().notices            # still full: still said, nothing raised
        (small_disk / "ballast").unlink()       # space comes back: retried, then completes
        snap = poll_until(eng, lambda s: s.finished)
        assert snap.succeeded and not snap.notices, snap.notices
        assert eng.runs["2d/0"].total_restarts == 0
        acts = actions(eng, "2d/0")
        assert "wait" in acts and "retry" in acts and "restart" not in acts
        c = calls(fold)
        assert len(c) == 2 and "--resume" in c[1]["argv"]
    finally:
        eng.close()
    lines = (eng.layout.console_events).read_bytes().splitlines()
    decoded = [json.loads(l) for l in lines]        # no torn line from the failed writes
    assert any(d.get("action") == "wait" for d in decoded)
    state = json.loads(eng.layout.state.read_text())
    assert state["runs"]["2d/0"]["state"] == "completed"


def test_enospc_on_state_and_events_keeps_the_console_alive(tmp_path, monkeypatch):
    """The fault-injection seam: state.json and events.jsonl writes fail for a while."""
    use_fake_trainer(monkeypatch, tmp_path, {"*": {"rate": 0.02}})
    eng = Engine(write_experiment(tmp_path, folds=(0,), pipeline=NO_STAGES),
                 sampler=cpu_sampler())
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    try:
        faults.arm("write:state", full, times=4)
        faults.arm("write:events", full, times=3)
        snap = eng.poll()                         # the plan's launch cannot be recorded
        assert calls(eng.layout.stage_dir("plan")) == []       # so nothing was started
        assert any("cannot write console/state.json" in n and "MB free on" in n
                   for n in snap.notices), snap.notices
        assert eng.runs["plan"].state == "queued"
        assert "not launched" in eng.runs["plan"].message
        snap = poll_until(eng, lambda s: s.finished)
        assert snap.succeeded and not snap.notices
        assert [len(calls(r.job.run_dir)) for r in eng.runs] == [1, 1, 1]
    finally:
        faults.disarm()
        eng.close()
    decoded = list(iter_jsonl(eng.layout.console_events))
    assert sum(d["action"] == "launch" for d in decoded) == 3   # kept in memory, then written
