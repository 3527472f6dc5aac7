"""`foldwatch` as a user runs it: real console processes over the stand-in trainer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from console.engine.core import Engine
from contracts.experiment import load_experiment
from engine_helpers import (REPO, actions, calls, cpu_sampler, poll_until, use_fake_trainer,
                            write_experiment)

NO_STAGES = {"evaluate": False, "find_best": False, "postprocess": False, "predict_test": False}


@pytest.fixture
def env(tmp_path, monkeypatch):
    def make(script=None):
        use_fake_trainer(monkeypatch, tmp_path, script)
        monkeypatch.setenv("FOLDWATCH_NO_NVML", "1")
        return dict(os.environ)
    return make


def foldwatch(*args, env, timeout=60, **kw):
    return subprocess.run([sys.executable, "-m", "console.clients.cli", *map(str, args)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout, **kw)


def spawn(*args, env):
    return subprocess.Popen([sys.executable, "-m", "console.clients.cli", *map(str, args)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def state_of(exp_path):
    p = load_experiment(exp_path).layout.state
    try:
        return json.loads(p.read_text())["runs"]
    except (OSError, ValueError, KeyError):
        return {}


def test_help_and_config_errors(tmp_path, env):
    e = env()
    out = foldwatch("--help", env=e)
    assert out.returncode == 0 and "status" in out.stdout and "demo" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\ndataset: d\nconfigurations: {2d: {epochs: -1}}\nfoo: 1\n")
    out = foldwatch("up", bad, "--headless", env=e)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "foo: unknown key" in out.stderr and "epochs" in out.stderr
    out = foldwatch("status", tmp_path / "missing.yaml", env=e)
    assert out.returncode == 2 and "not found" in out.stderr


def test_headless_exit_codes(tmp_path, env):
    exp = write_experiment(tmp_path, folds=(0,), pipeline=NO_STAGES)
    out = foldwatch("up", exp, "--headless", env=env())
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2d/0: queued -> starting" in out.stdout or "2d/0: - -> starting" in out.stdout
    assert "all runs completed" in out.stdout
    exp2 = write_experiment(tmp_path / "b" if (tmp_path / "b").mkdir() is None else None,
                            folds=(0,), pipeline=NO_STAGES)
    out = foldwatch("up", exp2, "--headless", env=env({"2d/0": {"then": "exit", "code": 3, "at": 0}}))
    assert out.returncode == 1
    assert "failed" in out.stdout and "dataset error" in out.stdout


def test_console_killed_runs_are_adopted_not_relaunched(tmp_path, env, monkeypatch):
    exp = write_experiment(tmp_path, folds=(0,), pipeline=NO_STAGES, epochs=8)
    e = env({"2d/0": {"rate": 0.6}})
    first = spawn("up", exp, "--headless", env=e)
    try:
        wait_for(lambda: (state_of(exp).get("2d/0") or {}).get("state") == "running")
    finally:
        first.send_signal(signal.SIGKILL)          # the console dies; its runs must not
        first.wait()
    rec = state_of(exp)["2d/0"]
    import psutil
    assert psutil.pid_exists(rec["pid"])
    eng = Engine(exp, sampler=cpu_sampler())
    try:
        assert "adopt" in actions(eng, "2d/0")
        snap = poll_until(eng, lambda s: s.finished, timeout=60)
        assert snap.succeeded
        assert len(calls(eng.layout.fold_dir("2d", 0))) == 1   # never launched twice
        acts = actions(eng, "2d/0")              # the first console's decisions come first
        assert acts.count("launch") == 1 and acts.index("launch") < acts.index("adopt")
    finally:
        eng.close()


def test_lock_read_only_status_and_stop(tmp_path, env):
    exp = write_experiment(tmp_path, folds=(0, 1), pipeline=NO_STAGES, epochs=50)
    e = env({"*": {"rate": 0.5}})
    first = spawn("up", exp, "--headless", env=e)
    try:
        wait_for(lambda: all((state_of(exp).get(k) or {}).get("state") == "running"
                             for k in ("2d/0", "2d/1")))
        second = spawn("up", exp, "--headless", env=e)     # one supervises: it follows
        first_line = second.stdout.readline()      # it follows (its signal handlers are set)
        second.send_signal(signal.SIGTERM)
        out2, _ = second.communicate(timeout=30)
        assert second.returncode == 1 and "supervision continues" in out2, (first_line, out2)
        assert "Traceback" not in out2
        st = foldwatch("status", exp, "--json", env=e)
        assert st.returncode == 0, st.stderr
        data = json.loads(st.stdout)
        states = {r["key"]: r["state"] for r in data["runs"]}
        assert states["2d/0"] == "running" and data["read_only"] and data["cpu_mode"]
        table = foldwatch("status", exp, env=e)
        assert "2d/0" in table.stdout and "running" in table.stdout
        out = foldwatch("stop", exp, "--run", "2d/0", env=e)
        assert out.returncode == 0, out.stderr
        assert state_of(exp)["2d/0"]["state"] == "stopped"
        assert state_of(exp)["2d/1"]["state"] == "running"
        bad = foldwatch("stop", exp, "--run", "2d/9", env=e)
        assert bad.returncode == 2 and "no such run" in bad.stderr
    finally:
        first.send_signal(signal.SIGTERM)           # headless quits, runs keep running
        out, _ = first.communicate(timeout=30)
    assert first.returncode == 1 and "1 run(s) keep going: 2d/1" in out
    pid = state_of(exp)["2d/1"]["pid"]
    import psutil
    assert psutil.pid_exists(pid)
    out = foldwatch("stop", exp, env=e)      # no supervisor: a temporary one adopts and stops
    assert out.returncode == 0, out.stderr
    assert state_of(exp)["2d/1"]["state"] == "stopped"
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie")
    # nothing left: the temporary supervisor answers and exits before its first tick is seen
    again = foldwatch("stop", exp, env=e)
    assert again.returncode == 0 and "nothing to stop" in again.stdout, again.stderr


def test_headless_stop_on_exit_stops_runs(tmp_path, env):
    exp = write_experiment(tmp_path, folds=(0,), pipeline=NO_STAGES, epochs=50)
    e = env({"*": {"rate": 0.5}})
    p = spawn("up", exp, "--headless", "--stop-on-exit", env=e)
    try:
        wait_for(lambda: (state_of(exp).get("2d/0") or {}).get("state") == "running")
    finally:
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=30)
    assert p.returncode == 1
    assert state_of(exp)["2d/0"]["state"] == "stopped", out


def test_help_imports_nothing_heavy():
    probe = ("import sys\nfrom console.clients.cli.main import main\ntry:\n    main(['--help'])\n"
             "except SystemExit:\n    pass\n"
             "print(sorted(m for m in ('pydantic', 'yaml', 'rich', 'psutil', 'pynvml', 'textual',"
             " 'console.engine.core') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
