"""contracts.runlock: one live process per run folder, whatever the state file says."""

import subprocess
import sys
import textwrap

import pytest

from contracts import exitcodes
from contracts.runlock import RunBusy, RunLock, holder


def test_free_folder_has_no_holder_and_probe_creates_nothing(tmp_path):
    assert holder(tmp_path / "fold_0") is None
    assert not (tmp_path / "fold_0").exists()


def test_second_acquirer_is_refused_with_the_holders_record(tmp_path):
    with RunLock(tmp_path, role="train"):
        rec = holder(tmp_path)
        assert rec["role"] == "train" and rec["pid"] > 0
        with pytest.raises(RunBusy) as e:
            RunLock(tmp_path).acquire()
        assert e.value.exit_code == exitcodes.BUSY and str(tmp_path) in str(e.value)
    assert holder(tmp_path) is None


def test_lock_dies_with_its_process(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        from contracts.runlock import RunLock
        RunLock({str(tmp_path)!r}).acquire()
        print("held", flush=True)
        sys.stdin.readline()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        assert holder(tmp_path)["pid"] == p.pid
        p.kill()
        p.wait()
        assert holder(tmp_path) is None
        with RunLock(tmp_path):
            pass
    finally:
        p.kill()


def test_a_probe_in_progress_is_not_a_holder(tmp_path):
    """`probe` takes a shared lock for an instant (a client asking whether the supervisor or
    a trainer is alive). A process taking the lock at that instant must not think it has a
    twin and exit BUSY: the lock of a killed holder, whose record is still in the file, held
    shared here by a prober that a loaded machine descheduled for 50 ms."""
    import fcntl
    import os
    import threading
    (tmp_path / "run.lock").write_text('{"pid": 4242, "host": "gone"}')
    fd = os.open(tmp_path / "run.lock", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    held = threading.Event()
    timer = threading.Timer(0.05, lambda: (fcntl.flock(fd, fcntl.LOCK_UN), held.set()))
    timer.start()
    try:
        with RunLock(tmp_path, role="train"):
            assert held.is_set() and holder(tmp_path)["role"] == "train"
    finally:
        timer.join()
        os.close(fd)


def test_the_busy_message_names_the_lock_file_it_met(tmp_path):
    lock = tmp_path / "supervisor.lock"
    with RunLock.at(lock, role="supervisor"):
        with pytest.raises(RunBusy, match="supervisor.lock"):
            RunLock.at(lock).acquire()
