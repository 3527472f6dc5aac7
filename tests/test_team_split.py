"""Several consoles, one experiment folder, no cluster: each claims its --runs, shows the
others' runs read-only with their host, and every pipeline stage runs exactly once."""

from __future__ import annotations

import json
import socket
import time

import pytest

from console.engine.core import Engine
from console.store.claims import ClaimBusy
from contracts.errors import ConfigError
from engine_helpers import calls, cpu_sampler, use_fake_trainer, write_experiment


def test_two_consoles_split_the_folds_and_run_each_stage_once(tmp_path, monkeypatch):
    use_fake_trainer(monkeypatch, tmp_path, {"*": {"rate": 0.05}})
    exp = write_experiment(tmp_path, folds=(0, 1, 2), epochs=3, devices={"cpu_slots": 2})
    a = Engine(exp, runs=["2d/0", "2d/2"], sampler=cpu_sampler())
    b = Engine(exp, runs=["2d/1"], sampler=cpu_sampler())
    try:
        with pytest.raises(ClaimBusy, match=r"2d/1 \(console pid \d+ on "):
            Engine(exp, runs=["2d/1"], sampler=cpu_sampler())
        seen_running_elsewhere = False
        deadline = time.monotonic() + 90
        while True:
            sa, sb = a.poll(), b.poll()
            other = next(r for r in sa.runs if r.key == "2d/1")
            if other.state == "running" and "another console" in (other.message or ""):
                seen_running_elsewhere = socket.gethostname() in other.message
                assert other.pid is None               # read-only here: no process of ours
            if sa.finished and sb.finished:
                break
            assert time.monotonic() < deadline, [(r.key, r.state, r.message) for r in sa.runs]
            time.sleep(0.05)
        assert sa.succeeded and sb.succeeded
        assert seen_running_elsewhere
        # Every console shows every run, completed.
        assert {r.key: r.state for r in sa.runs} == {r.key: r.state for r in sb.runs}
        lay = a.layout
        for key in ("plan", "preprocess-2d", "crossval-2d", "find-best", "predict"):
            assert len(calls(lay.stage_dir(key))) == 1, f"{key} ran more than once"
        for k in (0, 1, 2):
            assert len(calls(lay.fold_dir("2d", k))) == 1
        launched = {d.run_key for e in (a, b) for d in e.decisions.recent if d.action == "launch"}
        assert {"2d/0", "2d/1", "2d/2"} <= launched
        # Each console kept its own state file; neither wrote the single-console one.
        own = sorted(p.parent.name for p in (lay.console_dir / "consoles").glob("*/state.json"))
        assert len(own) == 2 and not lay.state.exists()
        saved_b = json.loads((lay.team_console_dir(b.claims.id) / "state.json").read_text())
        assert saved_b["runs"]["2d/1"]["state"] == "completed"
    finally:
        a.close()
        b.close()


def test_runs_must_name_folds_of_the_experiment(tmp_path, monkeypatch):
    use_fake_trainer(monkeypatch, tmp_path)
    exp = write_experiment(tmp_path, folds=(0, 1))
    with pytest.raises(ConfigError, match=r"no such fold: 2d/7; the experiment's folds are "
                                          r"2d/0, 2d/1"):
        Engine(exp, runs=["2d/7"], sampler=cpu_sampler())
    assert not (tmp_path / "results" / "t" / "console" / "claims").exists() or not any(
        (tmp_path / "results" / "t" / "console" / "claims").rglob("*.lock"))


def test_a_claim_another_supervisor_holds_is_not_waited_for(tmp_path, monkeypatch):
    """Each tick tries the stages whose inputs are complete; one another member holds is
    seen by a probe and skipped, without the exclusive try that waits past probes."""
    import contracts.runlock as runlock
    from console.store.claims import Claims
    from contracts.experiment import load_experiment
    layout = load_experiment(write_experiment(tmp_path, folds=(0, 1))).layout
    theirs, ours = Claims(layout, ["2d/0"]), Claims(layout, ["2d/1"])
    assert theirs.try_claim("find-best")
    tries = []
    real = runlock._lock_exclusive
    monkeypatch.setattr(runlock, "_lock_exclusive", lambda fd: (tries.append(fd), real(fd)))
    assert not ours.try_claim("find-best") and tries == []
    theirs.release()
    assert ours.try_claim("find-best") and len(tries) == 1
    ours.release()
