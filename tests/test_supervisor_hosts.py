"""A results folder shared between hosts: the supervisor ran on the GPU server, a client on
another machine (a laptop, a login node) mounts the folder. The client never starts the
supervisor on its own machine unasked: with the local backend the runs are the server's
processes, and a supervisor here would launch the queue here."""

from __future__ import annotations

import json
import time

import pytest

from console.protocol import attach
from console.protocol import presence as pr
from console.protocol.client import SupervisorClient
from contracts.errors import UserError
from contracts.experiment import load_experiment
from engine_helpers import write_experiment
from supervisor_helpers import foldwatch

SERVER = "gpu-server-7"


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """An experiment whose supervisor ran on SERVER until a minute ago, still wanted."""
    monkeypatch.setenv("FOLDWATCH_NO_NVML", "1")
    path = write_experiment(tmp_path, folds=(0, 1))
    home = load_experiment(path).layout.supervisor_home()
    home.dir.mkdir(parents=True)
    t = time.time()
    home.snapshot.write_text(json.dumps({"version": 1, "supervisor": {
        "pid": 4242, "host": SERVER, "started": t - 3600, "heartbeat": t - 60,
        "ended": t - 60, "end_reason": "signal SIGKILL"}, "snapshot": None}))
    pr.write_intent(home, True, "up", "foldwatch up")
    return path, home


def test_up_here_refuses_to_start_a_supervisor_that_ran_on_another_host(shared):
    path, home = shared
    out = foldwatch("up", path, "--headless", timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"`ssh {SERVER} foldwatch up {path}`" in out.stderr
    assert "--here" in out.stderr and "backend: local" in out.stderr
    assert pr.presence(home).state == "down" and not home.lock.exists()
    assert not home.log.exists(), "a supervisor was started"


def test_status_says_where_it_ran_and_starts_nothing(shared):
    path, home = shared
    out = foldwatch("status", path, "--json", timeout=120)
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    assert st["supervisor"]["state"] == "down" and st["supervisor"]["host"] == SERVER
    assert f"it ran on {SERVER}" in st["supervisor"]["text"]
    assert f"`foldwatch up` on {SERVER} resumes" in st["supervisor"]["text"]
    assert not home.log.exists() and pr.presence(home).state == "down"


def test_an_action_from_a_client_here_says_why_instead_of_starting_one(shared):
    path, home = shared
    client = SupervisorClient(path, home, kind="tui")
    client.poll()                                     # a view: no restart (not its host)
    said = client.set_watchdog(False)                 # the console's toast
    assert f"`ssh {SERVER} foldwatch up {path}`" in said and "--here" in said
    with pytest.raises(UserError, match=f"ssh {SERVER} foldwatch up"):
        client.request("set_watchdog", {"enabled": False})
    assert not home.log.exists()


def test_here_slurm_and_a_hung_one_elsewhere(shared):
    path, _ = shared
    down = pr.Presence("down", 4242, SERVER, since=time.time() - 60)
    attach.check_host(path, down, here=True)              # `up --here`: asked for
    slurm = path.with_name("slurm.yaml")
    slurm.write_text(path.read_text() + "backend: slurm\n")
    attach.check_host(slurm, down, here=False)            # cluster jobs: any login node
    hung = pr.Presence("not responding", 4242, SERVER, since=time.time() - 300)
    with pytest.raises(attach.SupervisedElsewhere, match=f"ssh {SERVER} foldwatch down"):
        attach.check_host(path, hung, here=True)          # its lock is held there
    attach.check_host(path, pr.Presence("down", 4242, None), here=False)   # this host
    attach.check_host(path, pr.Presence("never"), here=False)
