"""A real supervisor (as `foldwatch up` starts it, the runs the stand-in trainer) with
`metrics.listen`, scraped by a real Prometheus (Debian's package) and queried through its HTTP
API; and a supervisor whose metrics port is taken."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import urllib.request

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from contracts.experiment import load_experiment
from engine_helpers import use_fake_trainer, write_experiment
from prometheus_helpers import Prometheus, dashboard_queries, free_port, install_prometheus
from supervisor_helpers import foldwatch, snapshot_runs, supervised, wait_for

NO_STAGES = {"evaluate": False, "find_best": False, "postprocess": False, "predict_test": False}


@pytest.fixture(scope="session")
def prometheus_exe():
    exe, why = install_prometheus()
    if exe is None:
        pytest.skip(f"no Prometheus server: {why}")
    return exe


def experiment(tmp_path, monkeypatch, port: int):
    """One 2d fold of 200 one-second epochs on a CPU slot, metrics on 127.0.0.1:port."""
    monkeypatch.setenv("FOLDWATCH_NO_NVML", "1")
    use_fake_trainer(monkeypatch, tmp_path, {"*": {"rate": 1.0}})
    path = write_experiment(tmp_path, folds=(0,), epochs=200, pipeline=NO_STAGES,
                            devices={"cpu_slots": 1})
    data = yaml.safe_load(path.read_text())
    data["metrics"] = {"listen": f"127.0.0.1:{port}"}
    path.write_text(yaml.safe_dump(data))
    return path


def test_prometheus_sees_epochs_rise_and_a_killed_runs_restarts(tmp_path, monkeypatch,
                                                               prometheus_exe):
    port = free_port()
    exp = experiment(tmp_path, monkeypatch, port)
    prom = Prometheus(prometheus_exe, tmp_path / "prometheus", [f"127.0.0.1:{port}"])
    with supervised(exp) as (client, home):
        try:
            prom.start()
            fold = 'foldwatch_run_epoch{experiment="t", run="2d/0", fold="0", stage=""}'
            # the epoch series as Prometheus stored it: two scraped samples, the later higher
            wait_for(lambda: rising(prom.query(f"{fold}[2m]")), timeout=180, every=0.5,
                     what=f"{fold} to rise across scrapes")
            assert prom.values('up{job="foldwatch"}') == [1]
            assert prom.values('foldwatch_supervisor_up{experiment="t"}') == [1]
            assert prom.values('foldwatch_cpu_mode{experiment="t"}') == [1]
            assert prom.values('foldwatch_run_state{run="2d/0", state="running"}') == [1]
            assert prom.values('foldwatch_run_epochs{run="2d/0"}') == [200]
            host = prom.query('foldwatch_run_epoch{run="2d/0"}')[0]["metric"]["host"]
            assert host == socket.gethostname()
            # every query of the Grafana dashboard is valid PromQL, and the fold panels have data
            for expr in dashboard_queries():
                expr = expr.replace("$experiment", ".*").replace("$configuration", ".*")
                variable = re.fullmatch(r"label_values\((.*), (\w+)\)", expr)   # Grafana's
                got = prom.query(variable[1] if variable else expr)
                if variable:
                    assert any(variable[2] in s["metric"] for s in got), expr
                if "foldwatch_run_val_dice" in expr or "foldwatch_runs{" in expr:
                    assert got, f"no data for the dashboard's {expr}"
            before = prom.values('foldwatch_run_restarts_total{run="2d/0"}')
            assert before == [0]
            pid = snapshot_runs(home)["2d/0"]["pid"]
            os.killpg(pid, signal.SIGKILL)
            wait_for(lambda: prom.values('foldwatch_run_restarts_total{run="2d/0"}') == [1],
                     timeout=120, every=0.5, what="the restarts counter to count the kill")
            assert prom.values('increase(foldwatch_run_restarts_total{run="2d/0"}[5m])')[0] > 0
            wait_for(lambda: prom.values('foldwatch_run_state{run="2d/0", state="running"}')
                     == [1], timeout=120, every=0.5, what="2d/0 running again")
        finally:
            prom.stop()


def rising(result: list[dict]) -> bool:
    """A range query's one series has a sample higher than an earlier one."""
    if len(result) != 1:
        return False
    values = [float(v) for _, v in result[0]["values"]]
    return any(later > earlier for earlier, later in zip(values, values[1:]))


def metrics_text(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return {f.name: f for f in text_string_to_metric_families(r.read().decode())}


def serves(port: int) -> bool:
    try:
        fams = metrics_text(port)
    except OSError:
        return False
    return [s.value for s in fams["foldwatch_supervisor_up"].samples] == [1]


def notices(home) -> list[str]:
    try:
        return json.loads(home.snapshot.read_text())["snapshot"]["notices"]
    except (OSError, ValueError, KeyError):
        return []


def test_a_taken_port_is_a_notice_and_supervision_goes_on(tmp_path, monkeypatch):
    port = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    exp = experiment(tmp_path, monkeypatch, port)
    try:
        with supervised(exp) as (client, home):
            said = f"metrics: 127.0.0.1:{port} is in use"
            wait_for(lambda: any(n.startswith(said) for n in notices(home)), timeout=60,
                     what="the notice in snapshot.json")
            wait_for(lambda: snapshot_runs(home).get("2d/0", {}).get("state") == "running",
                     timeout=120, what="2d/0 running all the same")
            out = foldwatch("status", exp, "--json")
            assert out.returncode == 0, out.stderr
            assert any(n.startswith(said) for n in json.loads(out.stdout)["notices"])
            assert said in load_experiment(exp).layout.supervisor_home().log.read_text()
            blocker.close()                        # free: the supervisor takes it (every 10 s)
            wait_for(lambda: serves(port), timeout=60, every=0.5, what="metrics served")
            wait_for(lambda: not any(n.startswith("metrics:") for n in notices(home)),
                     timeout=30, what="the notice gone")
    finally:
        blocker.close()

