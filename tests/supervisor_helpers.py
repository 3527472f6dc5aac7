"""Helpers for the supervisor tests: start one detached as `foldwatch up` does, talk to it as
a client, and always end it (and its runs) when the test is over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from console.protocol import attach
from console.protocol import presence as pr
from console.protocol.client import SupervisorClient
from contracts.experiment import load_experiment
from contracts.runlock import probe
from engine_helpers import REPO


def foldwatch(*args, env=None, timeout=60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.clients.cli", *map(str, args)],
                          cwd=REPO, env=env or dict(os.environ), capture_output=True,
                          text=True, timeout=timeout, **kw)


def wait_for(pred, timeout: float = 60.0, every: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def snapshot_runs(home) -> dict[str, dict]:
    """The runs of the supervisor's last snapshot.json, by key ({} before the first)."""
    try:
        data = json.loads(home.snapshot.read_text())
    except (OSError, ValueError):
        return {}
    return {r["key"]: r for r in data["snapshot"]["runs"]}


def supervisor_pid(home) -> int | None:
    holder = probe(home.lock)
    return holder.get("pid") if holder else None


def kill_supervisor(home) -> int:
    """SIGKILL the live supervisor; its pid (after the lock is free again)."""
    pid = wait_for(lambda: supervisor_pid(home), what="a supervisor")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: probe(home.lock) is None, what="the lock to be free")
    return pid


def decisions(exp_path) -> list[dict]:
    path = load_experiment(exp_path).layout.console_events
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def end_supervision(exp_path: Path) -> None:
    """Teardown: stop the runs, end the supervisor (whatever state the test left it in)."""
    exp = load_experiment(exp_path)
    home = exp.layout.supervisor_home()
    foldwatch("stop", exp_path, timeout=120)
    foldwatch("down", exp_path, timeout=60)
    pid = supervisor_pid(home)
    if pid:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@contextmanager
def supervised(exp_path: Path, **kw):
    """A detached supervisor started as `foldwatch up` starts it, and a client of it."""
    exp = load_experiment(exp_path)
    home = exp.layout.supervisor_home()
    try:
        presence, started = attach.ensure(exp.source, home, explicit=True, by="test", **kw)
        assert started and presence.state == "alive"
        yield SupervisorClient(exp.source, home, kind="test"), home
    finally:
        end_supervision(exp_path)


def intent(home) -> dict:
    return pr.read_intent(home)
