from contracts import exitcodes
from contracts.errors import DatasetError
from contracts.events import validate_event
from contracts.jsonio import iter_jsonl
from trainer.runtime.runlog import RunLog


def test_completed_and_failed_attempts_end_with_contract_events(tmp_path):
    with RunLog(tmp_path, stage="demo") as log:
        log.progress("demo", 1, 2)
    assert log.exit_code == exitcodes.OK
    with RunLog(tmp_path, stage="demo") as log:
        raise DatasetError(["case_001: label missing", "case_002: NaN in image"])
    assert log.exit_code == exitcodes.DATASET
    events = list(iter_jsonl(tmp_path / "metrics.jsonl"))
    assert [e["event"] for e in events] == ["start", "progress", "end", "start", "end"]
    assert all(validate_event(e) == [] for e in events)
    assert events[-1]["status"] == "failed" and "case_002" in events[-1]["error"]


def test_out_of_memory_is_transient(tmp_path):
    class OutOfMemoryError(RuntimeError):
        pass
    with RunLog(tmp_path) as log:
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert log.exit_code == exitcodes.TRANSIENT


def test_end_carries_reason_and_the_whole_dataset_message(tmp_path):
    with RunLog(tmp_path, stage="demo") as log:
        raise DatasetError(["case_001: label missing", "case_002: NaN in image"])
    end = list(iter_jsonl(tmp_path / "metrics.jsonl"))[-1]
    assert end["reason"] == "dataset" and end["exit_code"] == exitcodes.DATASET
    assert "case_001" in end["message"] and "case_002" in end["message"]
    with RunLog(tmp_path, stage="demo") as log:
        log.stopped("timeout")
    end = list(iter_jsonl(tmp_path / "metrics.jsonl"))[-1]
    assert (end["status"], end["reason"], end["stop_cause"]) == ("stopped", "stopped", "timeout")


def test_crash_keeps_traceback_and_gives_a_one_line_message(tmp_path):
    try:
        with RunLog(tmp_path, stage="demo"):
            {}["missing"]
    except KeyError:
        pass
    end = list(iter_jsonl(tmp_path / "metrics.jsonl"))[-1]
    assert end["reason"] == "crash" and end["exit_code"] == exitcodes.FAILED
    assert "Traceback" in end["error"] and "\n" not in end["message"]
    assert "KeyError" in end["message"] and validate_event(end) == []


def test_second_process_for_a_run_folder_is_busy_and_writes_nothing(tmp_path):
    import pytest
    from contracts.runlock import RunBusy
    with RunLog(tmp_path, stage="demo"):
        before = (tmp_path / "metrics.jsonl").read_bytes()
        with pytest.raises(RunBusy) as info:
            RunLog(tmp_path, stage="demo").__enter__()
        assert info.value.exit_code == exitcodes.BUSY
        assert (tmp_path / "metrics.jsonl").read_bytes() == before


def test_disk_full_anywhere_is_no_space_not_a_crash(tmp_path, capsys):
    import errno
    with RunLog(tmp_path, stage="demo") as log:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.npy"))
        except OSError as e:     # as torch/nibabel report it: wrapped in another error
            raise RuntimeError("file write failed") from e
    assert log.exit_code == exitcodes.NO_SPACE
    end = list(iter_jsonl(tmp_path / "metrics.jsonl"))[-1]
    assert end["reason"] == "no_space" and "x.npy" in end["message"] and "MB free" in end["message"]
    assert "Traceback" not in capsys.readouterr().err


def test_plan_waits_for_running_preprocesses_and_says_so(tmp_path, capsys):
    import threading
    import time

    from trainer.runtime.planlock import plans_lock

    events, order = [], []

    class Log:
        def event(self, name, **fields):
            events.append((name, fields))

    def plan():
        with plans_lock(tmp_path / "plans", exclusive=True, log=Log()):
            order.append("plan")

    with plans_lock(tmp_path / "plans", exclusive=False):       # a preprocess reading a plan
        with plans_lock(tmp_path / "plans", exclusive=False):   # another configuration's
            t = threading.Thread(target=plan)
            t.start()
            deadline = time.monotonic() + 30
            while not events and time.monotonic() < deadline:
                time.sleep(0.01)
            order.append("preprocesses done")
    t.join(30)
    assert order == ["preprocesses done", "plan"]
    assert events[0][0] == "waiting" and "preprocess" in events[0][1]["reason"]
    assert "waiting for a running preprocess" in capsys.readouterr().err


def test_stale_temps_of_killed_writers_are_removed_and_nothing_else(tmp_path):
    from trainer.runtime.folders import remove_stale_temps
    stale = [tmp_path / "checkpoints/.latest.pt.0a1b2c3d.tmp", tmp_path / "validation/.0a1b2c3d.c.nii.gz"]
    kept = [tmp_path / "checkpoints/latest.pt", tmp_path / "run.lock", tmp_path / ".notes",
            tmp_path / "validation/c.nii.gz"]
    for p in stale + kept:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    assert remove_stale_temps(tmp_path) == 2
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


def test_stop_causes_sigterm_is_signal_sigusr2_is_timeout():
    import os
    import signal

    from trainer.runtime.signals import StopRequest
    for sig, cause in ((signal.SIGTERM, "signal"), (signal.SIGUSR2, "timeout")):
        with StopRequest() as stop:
            assert stop.cause is None
            os.kill(os.getpid(), sig)     # delivered before os.kill returns (main thread)
            assert stop.requested and stop.cause == cause


def test_ctrl_c_is_interrupted_not_a_crash(tmp_path, capsys):
    with RunLog(tmp_path, stage="demo") as log:
        raise KeyboardInterrupt
    end = list(iter_jsonl(tmp_path / "metrics.jsonl"))[-1]
    assert log.exit_code == exitcodes.INTERRUPTED
    assert (end["status"], end["reason"]) == ("stopped", "interrupted") and end["message"]
    assert "Traceback" not in capsys.readouterr().err
