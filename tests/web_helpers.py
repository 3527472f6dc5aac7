"""`foldwatch serve` as a user starts it: a real server process on a free port."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from contracts.experiment import load_experiment
from engine_helpers import REPO, use_fake_trainer, write_experiment
from supervisor_helpers import foldwatch, wait_for  # noqa: F401  (wait_for: for the web tests)

NO_STAGES = {"evaluate": False, "find_best": False, "postprocess": False, "predict_test": False}

URL = re.compile(r"http://\S+/\?token=(\S+)")


class Served:
    """A running `foldwatch serve`: its process, the printed URL and everything it printed."""

    def __init__(self, exp: Path, env: dict, *args: str, timeout: float = 60.0) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "console.clients.cli", "serve", str(exp), "--port", "0", *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._printed = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._printed.wait(timeout):
            self.stop()
            raise AssertionError(f"no URL within {timeout:.0f} s: {self.output}")
        self.url_s = time.monotonic() - self.started      # start to URL printed
        m = URL.search(self.output)
        self.url, self.token = m.group(0), m.group(1)
        self.base = self.url.split("/?", 1)[0]

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
            if URL.search(line):
                self._printed.set()
        self._printed.set()                 # exited without a URL: stop waiting

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def tabs(self) -> list[psutil.Process]:
        """The console processes the server started (one per open browser tab)."""
        try:
            return psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 30.0) -> int:
        """Ctrl-C, as in the terminal it runs in."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"foldwatch serve ignored Ctrl-C for {timeout:.0f} s")


def run_record(exp: Path, key: str = "2d/0") -> dict:
    """The run as the experiment's state file has it ({} before it is written)."""
    try:
        return json.loads(load_experiment(exp).layout.state.read_text())["runs"].get(key) or {}
    except (OSError, ValueError, KeyError):
        return {}


@pytest.fixture
def served(tmp_path, monkeypatch):
    """start(*args, ...) serves an experiment (the stand-in trainer, `epochs` long at 0.2 s an
    epoch); afterwards the servers get Ctrl-C and the runs their consoles started are stopped."""
    use_fake_trainer(monkeypatch, tmp_path, {"*": {"rate": 0.2}})
    monkeypatch.setenv("FOLDWATCH_NO_NVML", "1")
    started: list[tuple[Served, Path]] = []

    def start(*args, folder: Path = tmp_path, epochs: int = 3, folds=(0,),
              exp: Path | None = None):
        if exp is None:
            folder.mkdir(parents=True, exist_ok=True)
            exp = write_experiment(folder, folds=folds, epochs=epochs, pipeline=NO_STAGES)
        s = Served(exp, dict(os.environ), *args)
        started.append((s, exp))
        return s
    yield start
    for s, exp in started:
        s.stop()
        foldwatch("stop", exp, timeout=120)
