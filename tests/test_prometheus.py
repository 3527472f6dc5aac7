"""The supervisor's Prometheus metrics without a Prometheus server: the collector on scripted
snapshots (with GPUs, and in CPU mode) read back with prometheus_client's own text parser,
the real HTTP endpoint, a port in use, the `metrics.listen` schema, the metric reference in
docs/metrics.md and the Grafana dashboard's metric names.
(tests/test_prometheus_server.py scrapes a real supervisor with a real Prometheus.)"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from console.bridges.hub import Bridges
from console.bridges.prometheus import server as metrics_server
from console.bridges.prometheus.collector import SnapshotCollector
from console.bridges.prometheus.names import BY_NAME, METRICS, reference_table
from console.protocol.model import RUN_STATES
from console.protocol.vocabulary import COLUMNS
from contracts.errors import ConfigError
from contracts.experiment import parse_experiment
from prometheus_helpers import DASHBOARD, dashboard_queries
from ui_engine import ScriptedEngine

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "metrics.md"
TABLE = re.compile(r"(<!-- metrics:table -->\n)(.*?)(<!-- /metrics:table -->\n)", re.S)
MIB = 2 ** 20


def scrape(collector) -> dict:
    """{family name: family} of one exposition, parsed by prometheus_client's parser."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return {f.name: f for f in text_string_to_metric_families(generate_latest(reg).decode())}


def samples(fams: dict, metric: str, /, **match) -> list[tuple[dict, float]]:
    """(labels, value) of every sample called `metric` whose labels include `match`."""
    return [(s.labels, s.value) for s in fams[metric.removesuffix("_total")].samples
            if s.name == metric and all(s.labels.get(k) == v for k, v in match.items())]


def value(fams: dict, metric: str, /, **match) -> float:
    got = samples(fams, metric, **match)
    assert len(got) == 1, (metric, match, got)
    return got[0][1]


def collected(engine, t=None, local_host="node7"):
    snap = engine.poll()
    c = SnapshotCollector("demo", local_host=local_host)
    c.update(snap, time.time() if t is None else t)
    return snap, scrape(c)


def test_runs_gpus_and_experiment_read_back_with_the_text_parser():
    snap, fams = collected(ScriptedEngine())
    assert set(fams) >= {m.name.removesuffix("_total") for m in METRICS}
    for r in snap.runs:
        states = samples(fams, "foldwatch_run_state", run=r.key)
        assert sorted(lab["state"] for lab, _ in states) == sorted(RUN_STATES)
        assert [lab["state"] for lab, v in states if v == 1] == [r.state]
        assert value(fams, "foldwatch_run_restarts_total", run=r.key) == r.restarts
        assert all(lab["host"] == "node7" and lab["experiment"] == "demo" for lab, _ in states)
    lab, v = samples(fams, "foldwatch_run_val_dice", run="2d/1")[0]
    assert lab == {"experiment": "demo", "run": "2d/1", "configuration": "2d", "fold": "1",
                   "stage": "", "host": "node7"}
    assert v == pytest.approx(0.5 + 0.05 * 4)             # 4 epochs done (ui_engine)
    assert value(fams, "foldwatch_run_epoch", run="2d/1") == 4
    assert value(fams, "foldwatch_run_epochs", run="2d/1") == 8
    assert value(fams, "foldwatch_run_eta_seconds", run="2d/1") == 95.0 * 4
    assert value(fams, "foldwatch_run_samples_per_second", run="2d/1") == 40.5
    assert value(fams, "foldwatch_run_restarts_total", run="2d/2") == 1
    # a stage: its items as the Epoch column shows them; the stage label, no fold
    assert value(fams, "foldwatch_run_epoch", run="preprocess-2d", stage="preprocess",
                 fold="") == 20
    # not known yet, or not active: no sample at all (not 0, not NaN)
    assert samples(fams, "foldwatch_run_val_dice", run="2d/4") == []
    assert samples(fams, "foldwatch_run_eta_seconds", run="2d/2") == []       # backoff
    assert samples(fams, "foldwatch_run_last_event_age_seconds", run="2d/3") == []
    for state in RUN_STATES:
        assert value(fams, "foldwatch_runs", state=state) == sum(r.state == state
                                                                 for r in snap.runs)
    # GPUs (ui_engine.demo_gpus: two A100s and a lost one)
    a100 = {"index": "0", "uuid": "GPU-0", "name": "NVIDIA A100-SXM4-80GB"}
    assert value(fams, "foldwatch_gpu_utilization_ratio", **a100) == pytest.approx(0.87)
    assert value(fams, "foldwatch_gpu_memory_used_bytes", **a100) == 30_500 * MIB
    assert value(fams, "foldwatch_gpu_memory_total_bytes", **a100) == 81_920 * MIB
    assert value(fams, "foldwatch_gpu_temperature_celsius", **a100) == 64
    assert value(fams, "foldwatch_gpu_power_watts", **a100) == 310
    assert value(fams, "foldwatch_gpu_power_limit_watts", **a100) == 400
    assert value(fams, "foldwatch_gpu_foreign_memory_bytes", **a100) == 9_800 * MIB
    assert value(fams, "foldwatch_gpu_foreign_memory_bytes", index="1") == 0
    users = {(lab["index"], lab["run"]) for lab, v in samples(fams, "foldwatch_gpu_run_info")
             if v == 1}
    assert users == {("0", "2d/0"), ("0", "2d/2"), ("1", "2d/1")}
    assert value(fams, "foldwatch_gpu_run_memory_bytes", index="0", run="2d/2") == 10_100 * MIB
    assert value(fams, "foldwatch_gpu_lost", index="2") == 1
    assert value(fams, "foldwatch_gpu_lost", index="0") == 0
    assert samples(fams, "foldwatch_gpu_utilization_ratio", index="2") == []
    assert value(fams, "foldwatch_cpu_mode") == 0 and samples(fams, "foldwatch_cpu_slots") == []
    assert value(fams, "foldwatch_supervisor_up", experiment="demo") == 1
    assert value(fams, "foldwatch_experiment_finished") == 0
    assert value(fams, "foldwatch_watchdog_enabled") == 1


def test_cpu_mode_says_so_and_has_no_gpu_series():
    snap, fams = collected(ScriptedEngine(cpu_mode=True, finished=True))
    assert value(fams, "foldwatch_cpu_mode") == 1 and value(fams, "foldwatch_cpu_slots") == 3
    assert all(not f.samples for name, f in fams.items() if name.startswith("foldwatch_gpu_"))
    assert value(fams, "foldwatch_experiment_finished") == 1
    assert value(fams, "foldwatch_experiment_succeeded") == 1
    assert value(fams, "foldwatch_runs", state="completed") == len(snap.runs)


def test_supervisor_up_follows_the_last_tick():
    c = SnapshotCollector("demo", local_host="node7")
    fams = scrape(c)                                       # before the first tick
    assert [s.value for s in fams["foldwatch_supervisor_up"].samples] == [0]
    assert not fams["foldwatch_run_state"].samples
    _, fams = collected(ScriptedEngine(), t=time.time() - 100)   # the loop stuck for 100 s
    assert value(fams, "foldwatch_supervisor_up") == 0
    assert value(fams, "foldwatch_supervisor_last_tick_age_seconds") >= 100


def test_a_slurm_runs_host_stays_once_seen():
    engine = ScriptedEngine()
    c = SnapshotCollector("demo", local_host=None)
    snap = engine.poll()
    by = {r.key: r for r in snap.runs}
    by["2d/0"].host = "gpu-node3"
    c.update(snap, time.time())
    fams = scrape(c)
    assert {lab["host"] for lab, _ in samples(fams, "foldwatch_run_epoch", run="2d/0")} == {
        "gpu-node3"}
    assert {lab["host"] for lab, _ in samples(fams, "foldwatch_run_epoch", run="2d/1")} == {""}
    c.update(engine.poll(), time.time())                   # backoff: no process, no host
    fams = scrape(c)
    assert {lab["host"] for lab, _ in samples(fams, "foldwatch_run_epoch", run="2d/0")} == {
        "gpu-node3"}


def test_help_is_the_console_vocabulary_and_every_metric_is_documented():
    _, fams = collected(ScriptedEngine())
    definitions = {k: d for k, _, d in COLUMNS}
    for m in METRICS:
        fam = fams[m.name.removesuffix("_total")]
        assert fam.type == m.type and fam.documentation == m.help
        if m.column is not None:
            assert definitions[m.column] in fam.documentation
        assert m.name.startswith("foldwatch_")
        assert (m.type == "counter") == m.name.endswith("_total")
    text = DOC.read_text()
    new = TABLE.sub(lambda g: g.group(1) + reference_table() + g.group(3), text)
    if os.environ.get("FOLDWATCH_UPDATE_DOCS"):
        DOC.write_text(new)
    assert TABLE.search(text), "docs/metrics.md lost its <!-- metrics:table --> block"
    assert new == text, ("docs/metrics.md's metric table is stale: FOLDWATCH_UPDATE_DOCS=1 "
                         "pytest tests/test_prometheus.py")


def test_grafana_dashboard_uses_only_exposed_metric_names():
    data = json.loads(DASHBOARD.read_text())
    assert data["__inputs"][0]["pluginId"] == "prometheus" and data["uid"] == "foldwatch"
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    used = {n for q in dashboard_queries() for n in re.findall(r"\bfoldwatch_\w+", q)}
    assert used and used <= set(BY_NAME), f"unknown metric names: {used - set(BY_NAME)}"
    assert used <= set(re.findall(r"`(foldwatch_\w+)`", DOC.read_text()))
    # what the dashboard is for: per-fold curves, progress, speed, ETA, restarts, GPUs, state
    assert used >= {"foldwatch_run_val_dice", "foldwatch_run_ema_dice", "foldwatch_run_epoch",
                    "foldwatch_run_epochs", "foldwatch_run_samples_per_second",
                    "foldwatch_run_eta_seconds", "foldwatch_run_restarts_total",
                    "foldwatch_gpu_utilization_ratio", "foldwatch_gpu_memory_used_bytes",
                    "foldwatch_runs", "foldwatch_supervisor_up"}


def _exp(tmp_path, metrics) -> object:
    data = {"experiment": "m", "dataset": "data", "configurations": {"2d": {}},
            "metrics": metrics}
    return parse_experiment(data, tmp_path / "exp.yaml")


@pytest.mark.parametrize("listen, address", [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)), (" localhost:1 ", ("localhost", 1)),
    ("[::1]:9464", ("::1", 9464)), ("0.0.0.0:65535", ("0.0.0.0", 65535))])
def test_listen_accepts_host_and_port(tmp_path, listen, address):
    assert _exp(tmp_path, {"listen": listen}).metrics.address == address


@pytest.mark.parametrize("listen, said", [
    ("9464", "expected HOST:PORT, e.g. \"127.0.0.1:9464\""),
    (9464, "expected a quoted \"HOST:PORT\" such as \"127.0.0.1:9464\""),
    ("127.0.0.1:70000", "port 70000 is out of range: expected 1-65535"),
    ("127.0.0.1:0", "port 0 is out of range"),
    ("::1:9464", "an IPv6 address in brackets"),
    ("http://127.0.0.1:9464", "expected HOST:PORT")])
def test_a_wrong_listen_names_the_field(tmp_path, listen, said):
    with pytest.raises(ConfigError) as e:
        _exp(tmp_path, {"listen": listen})
    assert "exp.yaml: invalid experiment file" in str(e.value)
    assert "metrics.listen: " in str(e.value) and said in str(e.value)


def test_metrics_are_off_by_default_and_unknown_keys_refused(tmp_path):
    exp = parse_experiment({"experiment": "m", "dataset": "d", "configurations": {"2d": {}}})
    assert exp.metrics.address is None and Bridges(exp, active=True).metrics is None
    with pytest.raises(ConfigError, match=r"metrics\.port: unknown key"):
        _exp(tmp_path, {"port": 9464})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        return {f.name: f for f in text_string_to_metric_families(r.read().decode())}


def test_endpoint_serves_the_latest_tick_and_a_port_in_use_is_a_notice(tmp_path, monkeypatch,
                                                                       capsys):
    port = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    monkeypatch.setattr(metrics_server, "RETRY_S", 0.0)     # every tick tries again
    bridges = Bridges(_exp(tmp_path, {"listen": f"127.0.0.1:{port}"}), active=True)
    try:
        snap = ScriptedEngine().poll()
        bridges.tick(snap)
        notice = (f"metrics: 127.0.0.1:{port} is in use (another program listens there, "
                  "perhaps another experiment's supervisor); choose another in metrics.listen "
                  f"({tmp_path / 'exp.yaml'}), then `foldwatch down` and `foldwatch up`")
        bridges.tick(ScriptedEngine().poll())
        assert snap.notices[-1] == notice
        assert capsys.readouterr().out.count(f"127.0.0.1:{port} is in use") == 1   # said once
        blocker.close()                                    # the port is free again
        snap = ScriptedEngine(cpu_mode=True).poll()
        bridges.tick(snap)                                 # tries again and serves
        assert not snap.notices
        assert f"metrics at http://127.0.0.1:{port}/metrics" in capsys.readouterr().out
        fams = fetch(f"http://127.0.0.1:{port}/metrics")
        assert [s.value for s in fams["foldwatch_cpu_mode"].samples] == [1]
        assert fams["process_resident_memory_bytes"].samples[0].value > 0
        bridges.tick(ScriptedEngine(cpu_mode=False).poll())     # the next tick is what shows
        assert [s.value for s in fetch(f"http://127.0.0.1:{port}/metrics")
                ["foldwatch_cpu_mode"].samples] == [0]
    finally:
        blocker.close()
        bridges.close()
    with pytest.raises(OSError):                           # closed with the bridges
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)


def test_a_host_that_is_not_here_is_a_notice_too(tmp_path):
    bridges = Bridges(_exp(tmp_path, {"listen": "192.0.2.1:9464"}), active=True)   # TEST-NET-1
    try:
        snap = ScriptedEngine().poll()
        bridges.tick(snap)
        assert snap.notices[-1].startswith("metrics: 192.0.2.1:9464: 192.0.2.1 is not an "
                                           "address of this host; choose another")
    finally:
        bridges.close()


def test_run_hosts_are_this_host_except_in_a_team_split(tmp_path):
    exp = _exp(tmp_path, {"listen": f"127.0.0.1:{free_port()}"})
    for console_dir, host in ((exp.layout.console_dir, socket.gethostname()),
                              (exp.layout.team_console_dir("node2-1a2b"), None)):
        bridges = Bridges(exp, active=True, console_dir=console_dir)
        try:
            assert bridges.metrics.collector.local_host == host
        finally:
            bridges.close()
