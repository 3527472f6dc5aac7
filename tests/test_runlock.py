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
