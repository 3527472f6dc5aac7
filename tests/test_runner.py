"""console.runner with small real programs: retry with fewer workers, stop forwarding,
the run lock, --require and --skip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contracts import exitcodes
from contracts.jsonio import iter_jsonl
from contracts.runlock import RunLock

REPO = Path(__file__).resolve().parents[1]


def runner(run_dir: Path, *args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "console.runner", "--run-dir", str(run_dir),
                             *args], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO),
                                                    **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def log(run_dir: Path) -> list[dict]:
    return list(iter_jsonl(run_dir / "metrics.jsonl"))


# dies like nnU-Net's data loader while nnUNet_n_proc_DA > 1, then trains
FLAKY = """
import os, sys
n = int(os.environ["nnUNet_n_proc_DA"])
print("workers", n, "args", sys.argv[1:], flush=True)
if n > 1:
    print("RuntimeError: One or more background workers are no longer alive. Exiting.", file=sys.stderr)
    sys.exit(1)
"""


def test_workers_died_is_retried_with_fewer_workers_and_resume_args(tmp_path):
    p = runner(tmp_path, "--stage", "fold", "--workers-env", "nnUNet_n_proc_DA",
               "--retry-arg=--c", "--", sys.executable, "-c", FLAKY, env={"nnUNet_n_proc_DA": "8"})
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out.splitlines() == ["workers 8 args []", "workers 4 args ['--c']",
                                "workers 2 args ['--c']", "workers 1 args ['--c']"]
    ev = log(tmp_path)
    assert [e["event"] for e in ev] == ["start", "warning", "warning", "warning", "end"]
    assert "nnUNet_n_proc_DA=4" in ev[1]["message"] and ev[-1]["status"] == "completed"


SLEEPER = """
import signal, sys, time
def stop(*a):
    print("saving", flush=True); sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(60)
"""


def test_sigterm_is_passed_on_and_ends_as_stopped(tmp_path):
    p = runner(tmp_path, "--configuration", "c", "--fold", "0", "--", sys.executable, "-c",
               SLEEPER)
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(signal.SIGTERM)               # to the runner only: it must pass it on
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0 and "saving" in out
    end = log(tmp_path)[-1]
    assert end["status"] == "stopped" and end["reason"] == "stopped" and end["stop_cause"] == "signal"


def test_a_held_run_folder_exits_busy(tmp_path):
    with RunLock(tmp_path, role="someone"):
        p = runner(tmp_path, "--stage", "x", "--", sys.executable, "-c", "print(1)")
        out, err = p.communicate(timeout=30)
    assert p.returncode == exitcodes.BUSY and "already in use" in err
    assert not (tmp_path / "metrics.jsonl").exists()


def test_require_and_skip(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    p = runner(a, "--stage", "find-best", f"--require={tmp_path}/none.pth=fold 2d/3 is unfinished",
               "--", "false")
    p.communicate(timeout=30)
    end = log(a)[-1]
    assert p.returncode == 2 and end["message"] == "fold 2d/3 is unfinished" and end["reason"] == "usage"
    p = runner(b, "--stage", "predict", "--skip", "not chosen")
    p.communicate(timeout=30)
    end = log(b)[-1]
    assert p.returncode == 0 and end["status"] == "completed" and end["message"] == "not chosen"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_progress_bar_without_newlines_keeps_the_run_alive(tmp_path, how):
    bar = ("import sys, time\nfor i in range(30):\n    sys.stderr.write(f'\\rplanning {i}/30')\n"
           "    sys.stderr.flush(); time.sleep(0.1)\nprint()\n")
    flag = ["--heartbeat-s", "0.5"] if how == "flag" else []
    p = runner(tmp_path, "--stage", "plan", *flag, "--", sys.executable, "-c", bar,
               env={"FOLDWATCH_HEARTBEAT_S": "0.5" if how == "env" else "600"})
    p.communicate(timeout=60)
    beats = [e for e in log(tmp_path) if e["event"] == "heartbeat"]
    assert p.returncode == 0 and len(beats) >= 2


def test_unset_workers_start_from_nnunets_default(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_n_proc_DA"}
    p = subprocess.Popen([sys.executable, "-m", "console.runner", "--run-dir", str(tmp_path),
                          "--stage", "s", "--workers-env", "nnUNet_n_proc_DA", "--",
                          sys.executable, "-c", FLAKY.replace('int(os.environ["nnUNet_n_proc_DA"])',
                                                              'int(os.environ.get("nnUNet_n_proc_DA", 99))')],
                         cwd=REPO, env={**env, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                         text=True)
    out, _ = p.communicate(timeout=60)
    first_retry = out.splitlines()[1]
    assert p.returncode == 0 and first_retry.startswith(f"workers {min(12, os.cpu_count()) // 2} ")
