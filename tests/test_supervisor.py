"""One supervisor per experiment that outlives every window (real processes: the supervisor is
what `foldwatch up` starts, the runs are the stand-in trainer)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from console.protocol import channel
from console.protocol import presence as pr
from console.protocol.client import SupervisorClient
from contracts.experiment import load_experiment
from contracts.runlock import probe
from engine_helpers import REPO, calls, use_fake_trainer, write_experiment
from supervisor_helpers import (decisions, end_supervision, foldwatch, kill_supervisor,
                                snapshot_runs, supervised, supervisor_pid, wait_for)

NO_STAGES = {"evaluate": False, "find_best": False, "postprocess": False, "predict_test": False}


@pytest.fixture
def exp(tmp_path, monkeypatch):
    """Three folds of 2d on one CPU slot (two queued behind the first), no stages."""
    monkeypatch.setenv("FOLDWATCH_NO_NVML", "1")
    use_fake_trainer(monkeypatch, tmp_path, {"*": {"rate": 0.3}})
    return write_experiment(tmp_path, folds=(0, 1, 2), epochs=6, pipeline=NO_STAGES,
                            devices={"cpu_slots": 1})


def states(home) -> dict[str, str]:
    return {k: r["state"] for k, r in snapshot_runs(home).items()}


def test_killed_run_and_queued_runs_go_on_with_no_window(exp):
    with supervised(exp) as (client, home):
        wait_for(lambda: states(home).get("2d/0") == "running", what="2d/0 running")
        pid = snapshot_runs(home)["2d/0"]["pid"]
        os.killpg(pid, signal.SIGKILL)               # no window open: nobody but the supervisor
        wait_for(lambda: set(states(home).values()) == {"completed"}, timeout=120,
                 what="every run completed")
        acts = [(d["run"], d["action"]) for d in decisions(exp)]
        assert ("2d/0", "restart") in acts
        assert {k for k, a in acts if a == "launch"} >= {"2d/0", "2d/1", "2d/2"}
        st = foldwatch("status", exp, "--json")
        data = json.loads(st.stdout)
        assert data["supervisor"]["state"] == "alive" and data["finished"]


def test_any_command_restarts_a_killed_supervisor_which_adopts_its_runs(exp):
    (exp.parent / "script.json").write_text('{"*": {"rate": 1.5}}')   # still running after
    with supervised(exp) as (client, home):
        wait_for(lambda: states(home).get("2d/0") == "running", what="2d/0 running")
        first = kill_supervisor(home)
        st = foldwatch("status", exp, "--json")      # finds it gone while wanted: restarts it
        assert st.returncode == 0, st.stderr
        data = json.loads(st.stdout)
        assert data["supervisor"]["state"] == "alive" and data["supervisor"]["pid"] != first
        wait_for(lambda: set(states(home).values()) == {"completed"}, timeout=120,
                 what="every run completed")
        assert len(calls(load_experiment(exp).layout.fold_dir("2d", 0))) == 1   # adopted
        acts = [(d["run"], d["action"]) for d in decisions(exp)]
        assert ("2d/0", "adopt") in acts


def test_down_ends_supervision_a_killed_run_shows_dead_and_up_resumes(exp):
    with supervised(exp) as (client, home):
        wait_for(lambda: states(home).get("2d/0") == "running", what="2d/0 running")
        out = foldwatch("down", exp)
        assert out.returncode == 0 and "keep training unsupervised (2d/0)" in out.stdout
        assert probe(home.lock) is None and pr.read_intent(home)["wanted"] is False
        pid = snapshot_runs(home)["2d/0"]["pid"]
        os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: subprocess.run(["kill", "-0", str(pid)],
                                        capture_output=True).returncode != 0, what="gone")
        st = json.loads(foldwatch("status", exp, "--json").stdout)   # does not restart it
        row = next(r for r in st["runs"] if r["key"] == "2d/0")
        assert row["state"] == "dead" and "no supervisor" in row["message"], row
        assert st["supervisor"]["state"] == "down" and not st["finished"]
        assert "not supervised since" in st["notices"][0] and "foldwatch down" in st["notices"][0]
        text = foldwatch("status", exp).stdout
        assert "dead" in text and "running" not in text
        assert probe(home.lock) is None
        up = foldwatch("up", exp, "--headless", timeout=180)        # resumes supervision
        assert up.returncode == 0, up.stdout
        assert "2d/0: dead" not in up.stdout and "all runs completed" in up.stdout


def test_two_clients_status_and_stop_act_at_the_same_time(exp):
    with supervised(exp) as (client, home):
        wait_for(lambda: states(home).get("2d/0") == "running", what="2d/0 running")
        other = SupervisorClient(exp, home, kind="tui")
        answers: dict[str, str] = {}
        outs: dict[str, subprocess.CompletedProcess] = {}

        def act(name, fn):
            answers[name] = fn()

        def run(name, *args):
            outs[name] = foldwatch(*args, exp)
        work = [threading.Thread(target=act, args=("a", lambda: client.stop("2d/2"))),
                threading.Thread(target=act, args=("b", lambda: other.set_watchdog(False))),
                threading.Thread(target=run, args=("status", "status", "--json")),
                threading.Thread(target=run, args=("stop", "stop", "--run", "2d/1"))]
        for t in work:
            t.start()
        for t in work:
            t.join(60)
        assert answers["a"] == "2d/2 taken out of the queue; it stays stopped until you resume it (r)"
        assert answers["b"].startswith("watchdog off")
        assert outs["stop"].returncode == 0, outs["stop"].stderr
        assert "2d/1 taken out of the queue" in outs["stop"].stdout
        assert json.loads(outs["status"].stdout)["supervisor"]["state"] == "alive"
        wait_for(lambda: states(home).get("2d/1") == "stopped"
                 and states(home).get("2d/2") == "stopped", what="both stopped")
        snap = other.poll()
        assert not snap.watchdog_enabled
        by = {d.get("by") for d in decisions(exp) if d["action"] in ("stop", "watchdog")}
        assert {b.split(" on ")[0] for b in by} == {"test", "tui", "stop"}


def test_read_only_client_cannot_act_and_bad_requests_are_answered(exp):
    with supervised(exp) as (client, home):
        viewer = SupervisorClient(exp, home, kind="web", read_only=True)
        assert viewer.stop("2d/0") == "this view is read-only (--read-only): it cannot act"
        assert viewer.stderr_tail("2d/0") == [] or isinstance(viewer.stderr_tail("2d/0"), list)
        rid = channel.send(home.requests, "format_disk", {})
        reply = channel.wait_reply(home.replies, rid, 10)
        assert not reply.ok and "unknown request 'format_disk'" in reply.error
        rid = channel.send(home.requests, "stop", {"key": 3})
        reply = channel.wait_reply(home.replies, rid, 10)
        assert not reply.ok and reply.error == "stop: key must be text"
        (home.requests / "garbage.json").write_text("{not json")
        reply = channel.wait_reply(home.replies, "garbage", 10)
        assert not reply.ok and "unreadable request" in reply.error
        assert client.poll().supervisor.state == "alive"


def test_second_supervisor_is_refused_and_headless_follows_the_first(exp):
    with supervised(exp) as (client, home):
        second = subprocess.run([sys.executable, "-m", "console.supervisor", str(exp)],
                                cwd=REPO, capture_output=True, text=True, timeout=60)
        assert second.returncode == 73 and "already in use by" in second.stdout
        follow = foldwatch("up", exp, "--headless", timeout=180)
        assert follow.returncode == 0, follow.stdout
        assert "all runs completed" in follow.stdout
        assert supervisor_pid(home) is not None          # it goes on (lingers) after


def test_finished_supervisor_lingers_then_exits_and_is_not_restarted(tmp_path, monkeypatch):
    monkeypatch.setenv("FOLDWATCH_NO_NVML", "1")
    use_fake_trainer(monkeypatch, tmp_path, {})
    path = write_experiment(tmp_path, folds=(0,), epochs=2, pipeline=NO_STAGES)
    text = path.read_text() + "supervisor:\n  linger_s: 1\n"
    path.write_text(text)
    with supervised(path) as (client, home):
        wait_for(lambda: probe(home.lock) is None, timeout=120, what="the supervisor to exit")
        assert pr.read_intent(home)["wanted"] is False
        st = json.loads(foldwatch("status", path, "--json").stdout)
        assert st["supervisor"]["state"] == "down" and st["supervisor"]["reason"] == "finished"
        assert probe(home.lock) is None                  # status did not start it again
        assert "exits after 1s without work" in home.log.read_text()


def test_a_window_closed_by_sighup_in_tmux_changes_nothing(exp, tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux)")
    home = load_experiment(exp).layout.supervisor_home()
    sock = str(tmp_path / "tmux.sock")
    cmd = f"{sys.executable} -m console.clients.cli up {exp}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
    try:
        subprocess.run(["tmux", "-S", sock, "new-session", "-d", "-s", "fw", "-x", "120",
                        "-y", "40", cmd], check=True, env=env, cwd=REPO)
        wait_for(lambda: states(home).get("2d/0") == "running", what="2d/0 running")
        subprocess.run(["tmux", "-S", sock, "kill-server"], check=True)   # SIGHUP to the window
        wait_for(lambda: set(states(home).values()) == {"completed"}, timeout=120,
                 what="every run completed with no window")
        assert supervisor_pid(home) is not None
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True)
        end_supervision(exp)


def test_ls_lists_this_hosts_supervised_experiments(exp):
    with supervised(exp) as (client, home):
        out = foldwatch("ls", "--json")
        rows = json.loads(out.stdout)
        row = next(r for r in rows if r["file"] == str(exp))
        assert row["experiment"] == "t" and row["supervisor"] == "alive" and row["pid"]
        assert row["runs"] == 5                       # plan, preprocess-2d and 3 folds
        assert "experiments supervised on this host" in foldwatch("ls").stdout
