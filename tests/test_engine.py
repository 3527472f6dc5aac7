"""The engine with real subprocesses (the scripted stand-in trainer) in CPU mode."""

from __future__ import annotations

import pytest

from console.engine.core import Engine
from console.kinds.jobs import build_jobs
from contracts.experiment import load_experiment
from engine_helpers import (actions, calls, cpu_sampler, poll_until, run_state, use_fake_trainer,
                            write_experiment)


@pytest.fixture
def make_engine(tmp_path, monkeypatch):
    engines = []

    def make(script=None, **exp_kw):
        use_fake_trainer(monkeypatch, tmp_path, script)
        path = write_experiment(tmp_path, **exp_kw)
        eng = Engine(path, sampler=cpu_sampler())
        engines.append(eng)
        return eng

    yield make
    for e in engines:
        e.stop_all()
        try:
            poll_until(e, lambda s: not any(r.state in ("starting", "running", "stalled")
                                            for r in s.runs), timeout=20)
        finally:
            e.close()


def test_job_graph_honours_pipeline_switches(tmp_path):
    exp = load_experiment(write_experiment(tmp_path, configurations=("2d", "3d_fullres")))
    keys = [j.key for j in build_jobs(exp)]
    assert keys == ["plan", "preprocess-2d", "preprocess-3d_fullres", "2d/0", "2d/1",
                    "3d_fullres/0", "3d_fullres/1", "crossval-2d", "crossval-3d_fullres",
                    "find-best", "predict"]
    jobs = {j.key: j for j in build_jobs(exp)}
    assert jobs["find-best"].depends_on == ("crossval-2d", "crossval-3d_fullres")
    assert jobs["2d/1"].argv(exp.source, resume=True, overrides={"batch_size": 4,
                                                                "grad_accumulation": 2}) == [
        "train", "--experiment", str(exp.source), "--configuration", "2d", "--fold", "1",
        "--resume", "--batch-size", "4", "--grad-accumulation", "2"]
    exp2 = load_experiment(write_experiment(tmp_path, pipeline={
        "evaluate": False, "find_best": False, "postprocess": False, "predict_test": True}))
    jobs2 = {j.key: j for j in build_jobs(exp2)}
    assert "crossval-2d" not in jobs2 and "find-best" not in jobs2
    assert jobs2["predict"].depends_on == ("2d/0", "2d/1")


def test_whole_pipeline_completes_within_cpu_slots(make_engine, tmp_path):
    eng = make_engine({"*": {"rate": 0.05}}, folds=(0, 1, 2))
    most = 0

    def done(s):
        nonlocal most
        most = max(most, sum(r.state in ("starting", "running") for r in s.runs))
        return s.finished

    snap = poll_until(eng, done)
    assert snap.succeeded and snap.cpu_mode
    assert all(r.state == "completed" for r in snap.runs)
    assert most <= 2                                   # cpu_slots: 2
    lay = eng.layout
    c = calls(lay.fold_dir("2d", 0))
    assert len(c) == 1 and "--resume" not in c[0]["argv"]
    assert c[0]["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert c[0]["env"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert int(c[0]["env"]["FOLDWATCH_CPU_THREADS"]) >= 1
    stall = eng.exp.watchdog.stall_timeout_s
    assert float(c[0]["env"]["FOLDWATCH_HEARTBEAT_S"]) == min(60.0, stall / 3)
    assert calls(lay.stage_dir("preprocess-2d"))[0]["argv"][:4] == [
        "preprocess", "--experiment", str(eng.exp.source), "--configuration"]
    view = next(r for r in snap.runs if r.key == "2d/0")
    assert view.epoch == 3 and view.epochs == 3 and view.best_dice is not None
    assert [p.epoch for p in eng.epoch_history("2d/0")] == [0, 1, 2]
    assert (lay.fold_dir("2d", 0) / "stdout.log").exists()
    assert actions(eng).count("launch") == 3 + 5        # 3 folds + 5 stages, no double launch


def test_crash_is_resumed_after_backoff(make_engine):
    eng = make_engine({"2d/0": [{"then": "sigkill", "at": 1}, {}]}, folds=(0,),
                      pipeline={"evaluate": False, "find_best": False, "postprocess": False,
                                "predict_test": False})
    snap = poll_until(eng, lambda s: s.finished)
    assert snap.succeeded
    c = calls(eng.layout.fold_dir("2d", 0))
    assert len(c) == 2 and "--resume" in c[1]["argv"] and "--resume" not in c[0]["argv"]
    acts = actions(eng, "2d/0")
    assert "restart" in acts and "reset" in acts      # counter reset after an epoch
    view = next(r for r in snap.runs if r.key == "2d/0")
    assert view.restarts == 1
    restart = next(d for d in eng.decisions.recent if d.action == "restart")
    assert "signal 9" in restart.reason


def test_crash_loop_gives_up(make_engine):
    eng = make_engine({"2d/0": {"then": "crash", "at": 0}}, folds=(0,),
                      watchdog={"max_restarts": 2})
    snap = poll_until(eng, lambda s: s.finished)
    assert not snap.succeeded
    assert run_state(snap, "2d/0") == "failed"
    assert len(calls(eng.layout.fold_dir("2d", 0))) == 3
    assert actions(eng, "2d/0").count("restart") == 2 and "give_up" in actions(eng, "2d/0")
    # later stages are blocked, not waiting forever
    cv = next(r for r in snap.runs if r.key == "crossval-2d")
    assert cv.state == "queued" and "blocked" in cv.message


@pytest.mark.parametrize("code", [2, 3])
def test_permanent_exit_codes_are_not_restarted(make_engine, code):
    eng = make_engine({"2d/0": {"then": "exit", "code": code, "at": 0}}, folds=(0,))
    snap = poll_until(eng, lambda s: s.finished)
    assert run_state(snap, "2d/0") == "failed"
    assert len(calls(eng.layout.fold_dir("2d", 0))) == 1
    view = next(r for r in snap.runs if r.key == "2d/0")
    assert f"exit {code}" in view.message and "scripted exit" in view.message


def test_out_of_memory_refits_batch_size(make_engine):
    eng = make_engine({"2d/0": [{"then": "oom", "at": 1}, {"then": "oom", "at": 2}, {}]},
                      folds=(0,), pipeline={"evaluate": False, "find_best": False,
                                            "postprocess": False, "predict_test": False})
    snap = poll_until(eng, lambda s: s.finished)
    assert snap.succeeded
    c = calls(eng.layout.fold_dir("2d", 0))
    assert len(c) == 3
    a1, a2 = c[1]["argv"], c[2]["argv"]
    assert a1[a1.index("--batch-size") + 1] == "4" and a1[a1.index("--grad-accumulation") + 1] == "2"
    assert a2[a2.index("--batch-size") + 1] == "2" and a2[a2.index("--grad-accumulation") + 1] == "4"
    assert actions(eng, "2d/0").count("refit") == 2


def test_stalled_run_is_killed_and_restarted(make_engine):
    eng = make_engine({"2d/0": [{"then": "hang", "at": 1, "ignore_term": True}, {}]}, folds=(0,),
                      watchdog={"stall_timeout_s": 4.0, "grace_period_s": 0.5},
                      pipeline={"evaluate": False, "find_best": False, "postprocess": False,
                                "predict_test": False})
    snap = poll_until(eng, lambda s: s.finished)
    assert snap.succeeded
    acts = actions(eng, "2d/0")
    assert acts.index("stall") < acts.index("kill") < acts.index("restart")
    assert len(calls(eng.layout.fold_dir("2d", 0))) == 2


def test_stop_is_graceful_and_final(make_engine):
    eng = make_engine({"2d/0": {"then": "hang", "at": 1}}, folds=(0,))
    poll_until(eng, lambda s: run_state(s, "2d/0") == "running" and
               eng.runs["2d/0"].metrics.epoch == 1)
    eng.stop("2d/0")
    snap = poll_until(eng, lambda s: run_state(s, "2d/0") == "stopped")
    assert eng.runs["2d/0"].metrics.end["status"] == "stopped"
    assert "kill" not in actions(eng, "2d/0")         # SIGTERM was enough
    assert snap.finished and not snap.succeeded
    eng.resume("2d/0")
    assert run_state(eng.poll(), "2d/0") in ("queued", "starting")


def test_offline_view_shows_the_saved_state_writes_nothing_and_refuses_actions(make_engine):
    eng = make_engine({"*": {"rate": 0.05}}, folds=(0,))
    poll_until(eng, lambda s: s.finished)
    before = {p: p.stat().st_mtime_ns for p in eng.layout.console_dir.iterdir()}
    ro = Engine(eng.exp, read_only=True, sampler=cpu_sampler())   # `foldwatch status`, no
    try:                                                          # supervisor ever ran
        snap = ro.poll()
        assert snap.read_only and snap.finished and snap.succeeded
        assert "launch" in [d.action for d in snap.decisions]
        with pytest.raises(Exception):
            ro.stop("2d/0")
    finally:
        ro.close()
    assert {p: p.stat().st_mtime_ns for p in eng.layout.console_dir.iterdir()} == before


def test_restart_from_scratch_moves_outputs_aside(make_engine):
    eng = make_engine({}, folds=(0,), pipeline={"evaluate": False, "find_best": False,
                                                "postprocess": False, "predict_test": False})
    poll_until(eng, lambda s: s.finished)
    fold = eng.layout.fold_dir("2d", 0)
    eng.restart_from_scratch("2d/0")
    snap = poll_until(eng, lambda s: s.finished)
    assert snap.succeeded
    olds = [p for p in fold.parent.iterdir() if p.name.startswith("fold_0.old-")]
    assert len(olds) == 1 and (olds[0] / "metrics.jsonl").exists()
    assert len(calls(fold)) == 1 and "--resume" not in calls(fold)[0]["argv"]


def test_up_again_keeps_user_stops_continues_other_stops_and_keeps_completed(make_engine):
    eng = make_engine({"2d/0": [{"then": "hang", "at": 1}, {}],
                       "2d/1": [{"then": "hang", "at": 1}, {}]}, folds=(0, 1, 2),
                      devices={"cpu_slots": 3},
                      pipeline={"evaluate": False, "find_best": False, "postprocess": False,
                                "predict_test": False})
    poll_until(eng, lambda s: run_state(s, "2d/2") == "completed"
               and eng.runs["2d/0"].metrics.epoch == 1 and eng.runs["2d/1"].metrics.epoch == 1)
    eng.stop("2d/0")                      # the user's wish
    eng.stop("2d/1", final=False)         # what --stop-on-exit does
    poll_until(eng, lambda s: s.finished)
    eng.close()
    again = Engine(eng.exp, sampler=cpu_sampler())
    try:
        first = again.poll()
        assert run_state(first, "2d/2") == "completed"
        assert run_state(first, "2d/0") == "stopped"          # stays stopped after re-attach
        snap = poll_until(again, lambda s: run_state(s, "2d/1") == "completed")
        assert run_state(snap, "2d/0") == "stopped" and len(calls(again.layout.fold_dir("2d", 0))) == 1
        c = calls(again.layout.fold_dir("2d", 1))
        assert len(c) == 2 and "--resume" in c[1]["argv"]
        again.resume("2d/0")                                  # the user changes their mind
        snap = poll_until(again, lambda s: s.finished)
        assert snap.succeeded
        c = calls(again.layout.fold_dir("2d", 0))
        assert len(c) == 2 and "--resume" in c[1]["argv"]
        assert len(calls(again.layout.fold_dir("2d", 2))) == 1
    finally:
        again.close()


def test_a_fold_imported_while_no_supervisor_ran_counts_completed_at_start_up(tmp_path,
                                                                               monkeypatch):
    """`foldwatch import` with no supervisor alive: the next one finds the fold folder with
    its origin.json and a completed log, whatever state.json recorded, and never launches it."""
    import json
    from contracts.jsonio import EventWriter
    use_fake_trainer(monkeypatch, tmp_path, {"*": {"then": "hang", "at": 0}})
    path = write_experiment(tmp_path, folds=(0, 1), pipeline={
        "evaluate": False, "find_best": False, "postprocess": False, "predict_test": False})
    with Engine(path, sampler=cpu_sampler(), autostart=False) as eng:    # queued, not launched
        lay = eng.layout
    fold = lay.fold_dir("2d", 1)
    with EventWriter(fold / "metrics.jsonl") as w:
        w.write("start", configuration="2d", fold=1, pid=1, host="bob-ws")
        w.write("end", status="completed", error=None, exit_code=0)
    (fold / "origin.json").write_text(json.dumps({"version": 1, "key": "2d/1",
                                                  "trained_on": "bob-ws", "completed": 1.8e9}))
    eng = Engine(path, sampler=cpu_sampler())
    try:
        view = {r.key: r for r in eng.poll().runs}["2d/1"]
        assert view.state == "completed" and view.origin.startswith("bob-ws, ")
        assert ("2d/1", "import") in [(d.run_key, d.action) for d in eng.decisions.recent]
        assert calls(fold) == []                      # never launched
    finally:
        eng.stop_all()
        eng.close()
