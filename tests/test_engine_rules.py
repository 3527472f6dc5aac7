"""Engine rules with the injectable clock and a scripted backend: no processes, no sleeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.engine.core import Engine
from contracts.jsonio import EventWriter
from contracts.layout import run_files
from engine_helpers import (Clock, FakeNvml, ScriptedBackend, actions, cpu_sampler, gpu,
                            write_experiment)

NO_STAGES = {"evaluate": False, "find_best": False, "postprocess": False, "predict_test": False}


@pytest.fixture
def world(tmp_path):
    made = []

    def make(sampler=None, **exp_kw):
        exp_kw.setdefault("pipeline", NO_STAGES)
        exp_kw.setdefault("folds", (0,))
        clock, backend = Clock(), ScriptedBackend()
        eng = Engine(write_experiment(tmp_path, **exp_kw), clock=clock, backend=backend,
                     sampler=sampler or cpu_sampler())
        made.append(eng)
        return eng, clock, backend

    yield make
    for e in made:
        e.close()


def log(eng, key, event, **fields):
    with EventWriter(run_files(eng.runs[key].job.run_dir)["metrics"]) as w:
        w.write(event, **fields)


def start(eng, key):
    if eng.runs[key].job.kind == "stage":
        log(eng, key, "start", stage=key, pid=1, host="x")
    else:
        log(eng, key, "start", configuration="2d", fold=0, pid=1, host="x", device="cpu",
            attempt=1, resumed_from=None, epochs=3, iterations_per_epoch=2, batch_size=8)


def finish(eng, backend, key, code=0, **end):
    handle = eng.runs[key].handle
    log(eng, key, "end", **{"status": "completed" if code == 0 else "failed", "error": None,
                            "exit_code": code, **end})
    backend.exit(handle, code)


def through_stages(eng, backend):
    for key in ("plan", "preprocess-2d"):
        eng.poll()
        start(eng, key)
        finish(eng, backend, key)
    eng.poll()
    assert eng.runs["2d/0"].handle is not None


def crash_and_relaunch(eng, clock, backend):
    backend.exit(eng.runs["2d/0"].handle, 1)
    eng.poll()
    assert eng.runs["2d/0"].state == "backoff"
    clock.advance(10)
    eng.poll()
    assert eng.runs["2d/0"].handle is not None


def test_restart_counter_resets_on_a_new_checkpoint_not_on_an_epoch_line(world):
    eng, clock, backend = world(watchdog={"max_restarts": 5})
    through_stages(eng, backend)
    run = eng.runs["2d/0"]
    start(eng, "2d/0")
    log(eng, "2d/0", "epoch", epoch=0)                 # announced, but its checkpoint failed
    crash_and_relaunch(eng, clock, backend)
    start(eng, "2d/0")
    log(eng, "2d/0", "epoch", epoch=0)
    eng.poll()
    assert run.restarts == 1                           # an epoch line is not progress
    crash_and_relaunch(eng, clock, backend)
    assert run.restarts == 2
    start(eng, "2d/0")
    log(eng, "2d/0", "checkpoint", kind="best", epoch=0, path="best.pt")
    eng.poll()
    assert run.restarts == 2                           # only `latest` makes a run resumable
    log(eng, "2d/0", "checkpoint", kind="latest", epoch=0, path="latest.pt")
    eng.poll()
    assert run.restarts == 0 and actions(eng, "2d/0").count("reset") == 1
    crash_and_relaunch(eng, clock, backend)
    start(eng, "2d/0")
    log(eng, "2d/0", "checkpoint", kind="latest", epoch=0, path="latest.pt")   # not newer
    eng.poll()
    assert run.restarts == 1
    log(eng, "2d/0", "checkpoint", kind="latest", epoch=1, path="latest.pt")
    eng.poll()
    assert run.restarts == 0 and run.total_restarts == 3


def test_busy_exit_counts_no_restart_and_no_space_waits(world):
    eng, clock, backend = world()
    through_stages(eng, backend)
    run = eng.runs["2d/0"]
    backend.exit(run.handle, 73)          # the folder was busy, but its holder is gone now
    eng.poll()
    assert run.restarts == 0 and "requeue" in actions(eng, "2d/0")
    assert run.handle is not None and len(backend.submitted) == 4      # launched again
    start(eng, "2d/0")
    finish(eng, backend, "2d/0", 74, message="no space left on /r: 1 MB free, checkpoint "
           "needs ~5 MB", reason="no_space")
    eng.poll()
    assert run.state == "waiting" and run.restarts == 0 and run.total_restarts == 0
    assert not eng.poll().finished            # waiting is not giving up: headless keeps going
    assert run.message.startswith("waiting for disk space:") and "no space left on /r" in run.message
    snap = eng.poll()
    assert any(n.startswith("waiting for disk space (2d/0)") for n in snap.notices)
    eng.close()                           # a new console keeps waiting, same threshold
    again = Engine(eng.exp, clock=clock, backend=backend, sampler=cpu_sampler())
    try:
        run2 = again.runs["2d/0"]
        assert run2.state == "waiting" and run2.wait_for_free == run.wait_for_free
        assert "no space left on /r" in run2.wait_reason
        run2.wait_for_free = 0            # as if space came back
        again.poll()
        assert "retry" in actions(again, "2d/0") and run2.handle is not None
    finally:
        again.close()


def test_every_failure_says_why(world):
    eng, clock, backend = world(folds=(0, 1, 2), devices={"cpu_slots": 3})
    for key in ("plan", "preprocess-2d"):
        eng.poll()
        start(eng, key)
        finish(eng, backend, key)
    eng.poll()
    runs = eng.runs
    problems = ("dataset problems (2):\n  - case_001: label has 3 classes, expected 2\n"
                "  - case_007: image and label shapes differ")
    start(eng, "2d/0")
    finish(eng, backend, "2d/0", 3, message=problems, reason="dataset",
           error="Traceback (most recent call last):\n  File \"x\"\nDatasetError: ...")
    start(eng, "2d/1")
    finish(eng, backend, "2d/1", 2, message=None,
           error="Traceback (most recent call last):\n  File \"x\", line 1\n"
                 "    raise\nValueError: checkpoints/latest.pt is truncated\n  ^^^^^\n")
    runs["2d/2"].job.run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_files(runs["2d/2"].job.run_dir)["stderr"], "w") as f:
        f.write("warming up\nerror: results folder /r is not writable\n\n")
    backend.exit(runs["2d/2"].handle, 2)                # no end event at all
    snap = eng.poll()
    msg = {r.key: r.message for r in snap.runs}
    assert msg["2d/0"].startswith("dataset error (exit 3, never restarted): dataset problems (2)")
    assert "case_001" in msg["2d/0"] and "case_007" in msg["2d/0"]      # all of them
    assert msg["2d/1"].endswith("ValueError: checkpoints/latest.pt is truncated")
    assert msg["2d/2"].endswith("warming up\nerror: results folder /r is not writable")


def test_gpus_that_do_not_exist_are_named(world):
    nvml = FakeNvml([gpu("A"), gpu("B")])
    from console.gpu.nvml import NvmlSampler
    eng, clock, backend = world(sampler=NvmlSampler(nvml, interval=0.05),
                                devices={"gpus": [3, 5]})
    import time
    deadline = time.monotonic() + 10
    while eng.sampler.latest().available is None and time.monotonic() < deadline:
        time.sleep(0.02)
    snap = eng.poll()
    text = " ".join(snap.notices)
    assert "devices.gpus names GPU 3, 5, which NVML does not list (GPUs here: 0, 1)" in text
    eng.runs["plan"].state = "completed"      # skip to the fold: it has nowhere to go
    eng.runs["preprocess-2d"].restore("completed")
    snap = eng.poll()
    fold = next(r for r in snap.runs if r.key == "2d/0")
    assert fold.state == "queued" and "GPU 3, 5" in fold.message and "fix devices.gpus" in fold.message


def test_gpus_asked_for_in_cpu_mode_are_said(world):
    eng, clock, backend = world(devices={"gpus": [0]})
    import time
    deadline = time.monotonic() + 10
    while eng.sampler.latest().available is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any("devices.gpus asks for GPU 0, but no GPU is available" in n
               for n in eng.poll().notices)


def test_stderr_fallback_takes_the_last_tracebacks_exception():
    from console.engine.rules import explain
    stderr = ("Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n"
              "    old()\nOldError: from an earlier attempt\n"
              "Traceback (most recent call last):\n  File \"b.py\", line 84, in run\n"
              "    from trainer import device as devices\n"
              "ImportError: cannot import name 'device' from 'trainer'\n\n").splitlines()
    assert explain(None, stderr) == "ImportError: cannot import name 'device' from 'trainer'"
    assert explain(None, ["usage: trainer train ...", "trainer: error: --fold is required", ""]) \
        == "usage: trainer train ...\ntrainer: error: --fold is required"
    assert explain({"message": "  one clean sentence  ", "error": "x"}, stderr) == "one clean sentence"
    assert explain(None, []) is None


def test_exit_130_is_a_stop_not_a_crash():
    from console.engine.rules import judge_exit
    from contracts.experiment import Watchdog
    v = judge_exit(130, {"status": "stopped", "reason": "interrupted", "exit_code": 130},
                   stop_requested=False, stalled=False, restarts=0, cfg=Watchdog(), enabled=True)
    assert (v.outcome, v.action) == ("stopped", "stopped")


def test_busy_exit_adopts_the_live_holder_of_the_run_folder(world):
    import subprocess
    import sys
    import time

    from contracts.runlock import holder
    eng, clock, backend = world()
    through_stages(eng, backend)
    run = eng.runs["2d/0"]
    fold = run.job.run_dir
    hold = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from contracts.runlock import RunLock\n"
        "with RunLock(sys.argv[2], role='train'):\n    time.sleep(60)"),
        str(Path(__file__).resolve().parents[1]), str(fold)])
    try:
        deadline = time.monotonic() + 30
        while not (holder(fold) or {}).get("pid"):        # held, and its record written
            assert time.monotonic() < deadline and hold.poll() is None
            time.sleep(0.02)
        backend.adoptable["2d/0"] = {"pid": hold.pid}
        backend.exit(run.handle, 73)           # our launch lost the race to that process
        eng.poll()
        assert run.handle is not None and run.handle.pid == hold.pid
        assert run.restarts == 0 and run.total_restarts == 0
        assert actions(eng, "2d/0")[-1] == "adopt" and len(backend.submitted) == 3
    finally:
        hold.kill()
        hold.wait()


def test_walltime_stops_resubmit_without_restarts_until_they_stop_making_progress(world):
    """A stop the console did not ask for with stop_cause timeout is resubmitted with
    --resume and counts no restart; 5 such stops in a row without a new latest.pt fail the
    run with a reason instead of resubmitting forever."""
    from console.engine.exits import MAX_FRUITLESS_CLUSTER_STOPS
    eng, clock, backend = world()
    through_stages(eng, backend)
    latest = run_files(eng.runs["2d/0"].job.run_dir)["latest"]
    for attempt in range(MAX_FRUITLESS_CLUSTER_STOPS + 3):
        eng.poll()
        fold = eng.runs["2d/0"]
        assert fold.handle is not None, (attempt, fold.state, fold.message)
        if attempt:
            assert "--resume" in backend.submitted[-1].argv
        start(eng, "2d/0")
        if attempt < 2:                    # progress: a new checkpoint in each of these
            latest.parent.mkdir(parents=True, exist_ok=True)
            latest.write_bytes(b"x" * (attempt + 1))
            import os
            os.utime(latest, (1000 + attempt, 1000 + attempt))
        finish(eng, backend, "2d/0", code=0, status="stopped", stop_cause="timeout")
        eng.poll()
        if fold.state == "failed":
            break
    assert fold.state == "failed" and "without saving a new checkpoint" in fold.message
    assert fold.total_restarts == 0
    assert actions(eng, "2d/0").count("requeue") == 1 + MAX_FRUITLESS_CLUSTER_STOPS
