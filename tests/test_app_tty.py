"""`foldwatch up` in a real pseudo-terminal (as in tmux over SSH): it draws, `q` closes the
window and says supervision continues, `foldwatch up` again attaches to the same supervisor,
and with no window open the supervisor finishes the experiment."""

from __future__ import annotations

import os
import pty
import select
import struct
import subprocess
import sys
import time
import fcntl
import termios

import pytest

from engine_helpers import REPO, use_fake_trainer, write_experiment

if sys.platform == "win32":      # pragma: no cover
    pytest.skip("needs a pty", allow_module_level=True)


def _open_console(exp, env) -> tuple[subprocess.Popen, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "console.clients.cli", "up", str(exp)], cwd=REPO,
                            stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    return proc, master


def _read_until(master, proc, needle: bytes | None, timeout=30.0, until=None) -> bytes:
    """Drain the terminal until `needle` was printed (or `until()` holds)."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            out += chunk
        elif proc.poll() is not None:
            break
        if (needle is not None and needle in out) or (until is not None and until()):
            return out
    raise AssertionError(f"{needle!r} not seen; got tail {out[-600:]!r}")


def test_up_in_a_terminal_quits_leaving_runs_running(tmp_path, monkeypatch):
    use_fake_trainer(monkeypatch, tmp_path, {"*": {"rate": 1.0}})     # slow: still running at q
    exp = write_experiment(tmp_path, folds=(0,), epochs=30, pipeline={
        "evaluate": False, "find_best": False, "postprocess": False, "predict_test": False})
    env = {**os.environ, "TERM": "xterm-256color", "FOLDWATCH_NO_NVML": "1",
           "PYTHONPATH": str(REPO)}
    fold = exp.parent / "results" / "t" / "2d" / "fold_0"
    started = lambda: (fold / "metrics.jsonl").exists()             # noqa: E731
    proc, master = _open_console(exp, env)
    try:
        _read_until(master, proc, None, until=started)
        os.write(master, b"q")
        out = _read_until(master, proc, b"`foldwatch down` to stop supervising")
        assert proc.wait(timeout=20) == 0
        assert b"supervision continues (pid" in out
        # a second window attaches to the same supervisor: the run is never launched twice
        proc2, master2 = _open_console(exp, env)
        _read_until(master2, proc2, b"running")
        os.write(master2, b"Q")
        _read_until(master2, proc2, b"Stop all")
        os.write(master2, b"y")
        out2 = _read_until(master2, proc2, b"all runs stopped")
        assert proc2.wait(timeout=30) == 0, out2[-400:]
        os.close(master2)
        calls = (fold / "fake_calls.jsonl").read_text().splitlines()
        assert len(calls) == 1          # adopted, never launched twice
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        subprocess.run([sys.executable, "-m", "console.clients.cli", "stop", str(exp)], cwd=REPO,
                       env=env, capture_output=True, timeout=60)
        subprocess.run([sys.executable, "-m", "console.clients.cli", "down", str(exp)], cwd=REPO,
                       env=env, capture_output=True, timeout=60)


def test_q_with_folds_queued_and_the_pipeline_finishes_with_no_window(tmp_path, monkeypatch):
    """One CPU slot, three folds: `q` while two are still queued; they start, and the
    pipeline's stages run after them, with no window open."""
    import json
    from contracts.experiment import load_experiment
    use_fake_trainer(monkeypatch, tmp_path, {"*": {"rate": 0.3}})
    exp = write_experiment(tmp_path, folds=(0, 1, 2), epochs=4, devices={"cpu_slots": 1})
    env = {**os.environ, "TERM": "xterm-256color", "FOLDWATCH_NO_NVML": "1",
           "PYTHONPATH": str(REPO)}
    home = load_experiment(exp).layout.supervisor_home()

    def runs():
        try:
            return {r["key"]: r["state"] for r in
                    json.loads(home.snapshot.read_text())["snapshot"]["runs"]}
        except (OSError, ValueError):
            return {}
    proc, master = _open_console(exp, env)
    try:
        _read_until(master, proc, None, until=lambda: runs().get("2d/0") == "running")
        assert runs()["2d/1"] == "queued" and runs()["2d/2"] == "queued"
        os.write(master, b"q")
        _read_until(master, proc, b"`foldwatch down` to stop supervising")
        assert proc.wait(timeout=20) == 0
        deadline = time.monotonic() + 180
        while set(runs().values()) != {"completed"}:
            assert time.monotonic() < deadline, runs()
            time.sleep(0.2)
        assert {"crossval-2d", "find-best", "predict"} <= set(runs())
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        subprocess.run([sys.executable, "-m", "console.clients.cli", "down", str(exp)], cwd=REPO,
                       env=env, capture_output=True, timeout=60)
