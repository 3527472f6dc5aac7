"""notify.urls: Apprise delivers to a real HTTP receiver on 127.0.0.1 (json://, form://,
ntfy://), beside notify.command and through the same outbox: once per target, also across a
notifier killed in the middle of a delivery; a 500 is logged with the service's answer and
not retried; a URL Apprise cannot use is refused before anything starts, its token masked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from urllib.parse import parse_qs

import pytest
import yaml

from console.bridges.hub import Bridges
from console.bridges.notify import Notifier
from console.engine.decisions import DecisionLog
from contracts.errors import ConfigError
from contracts.experiment import load_experiment
from contracts.jsonio import iter_jsonl
from engine_helpers import REPO
from http_receiver import Receiver

APPEND = "import sys; d = sys.stdin.read(); open(sys.argv[1], 'a').write(d.replace('\\n', ' ') + '\\n')"
TOKEN = "Zq8RkT3vW9xYb2"          # looks like a service token: must never be printed


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _exp(tmp_path, **notify):
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({
        "experiment": "n", "dataset": "data", "results": "results",
        "configurations": {"2d": {}}, "folds": [0, 1], "notify": {"disk_free_gb": 0, **notify}}))
    exp = load_experiment(path)
    exp.layout.console_dir.mkdir(parents=True, exist_ok=True)
    return exp


def _logged(exp):
    return [e for e in iter_jsonl(exp.layout.notify_log) if e.get("event") == "notify"]


def test_each_url_and_the_command_get_each_notification_once_and_a_500_is_logged(
        tmp_path, receiver):
    inbox = tmp_path / "inbox.jsonl"
    exp = _exp(tmp_path, command=[sys.executable, "-c", APPEND, str(inbox)],
               urls=[receiver.url("json", "hook"), receiver.url("form", "form"),
                     receiver.url("ntfy", "topic"), receiver.url("json", f"refuse/{TOKEN}")])
    decisions = DecisionLog(exp.layout.console_events)
    decisions.record(1.0, "2d/0", "give_up", "crashed (exit code 1); gave up after 5 restarts")
    Notifier(exp).tick()

    assert receiver.paths() == ["/hook", "/form", "/", f"/refuse/{TOKEN}"]   # in file order
    by_path = {r["path"]: r for r in receiver.requests}
    sent = json.loads(by_path["/hook"]["body"])              # Apprise's JSON notification
    assert sent["title"] == "foldwatch n: watchdog gave up on 2d/0"
    assert "gave up after 5 restarts" in sent["message"] and sent["type"] == "failure"
    form = parse_qs(by_path["/form"]["body"].decode())
    assert by_path["/form"]["type"].startswith("application/x-www-form-urlencoded")
    assert form["title"] == ["foldwatch n: watchdog gave up on 2d/0"]
    assert json.loads(by_path["/"]["body"])["topic"] == "topic"      # ntfy's publish call
    assert [json.loads(x)["event"] for x in inbox.read_text().splitlines()] == [
        "watchdog_gave_up"]

    log = _logged(exp)
    assert [(e["target"].split(" ")[0], e["status"]) for e in log] == [
        ("notify.command", "sent"), ("notify.urls[0]", "sent"), ("notify.urls[1]", "sent"),
        ("notify.urls[2]", "sent"), ("notify.urls[3]", "failed")]
    refused = log[-1]
    assert "500" in refused["error"] and refused["kind"] == "watchdog_gave_up"
    assert TOKEN not in exp.layout.notify_log.read_text()            # masked: Z...2
    assert f"refuse/{TOKEN[0]}...{TOKEN[-1]}" in refused["target"]

    # a restarted notifier sends nothing again, the refused one included (never retried) ...
    Notifier(exp).tick()
    assert len(receiver.paths()) == 4 and len(_logged(exp)) == 5
    # ... and the next event goes to every target once
    decisions.record(2.0, "2d/1", "fail", "dataset error (exit 3, never restarted): case_004")
    Notifier(exp).tick()
    assert receiver.paths()[4:] == ["/hook", "/form", "/", f"/refuse/{TOKEN}"]
    assert json.loads(receiver.requests[4]["body"])["title"] == "foldwatch n: 2d/1 failed"
    assert len(inbox.read_text().splitlines()) == 2


KILLABLE = ("import sys; from contracts.experiment import load_experiment; "
            "from console.bridges.notify import Notifier; "
            "Notifier(load_experiment(sys.argv[1])).tick()")


def test_a_notifier_killed_mid_delivery_resumes_with_the_targets_not_reached(
        tmp_path, receiver):
    inbox = tmp_path / "inbox.jsonl"
    exp = _exp(tmp_path, command=[sys.executable, "-c", APPEND, str(inbox)],
               urls=[receiver.url("json", "first"), receiver.url("json", "hold"),
                     receiver.url("json", "last")])
    DecisionLog(exp.layout.console_events).record(1.0, "2d/0", "fail", "dataset error")
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(exp.source)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        # killed while the second URL's service has not answered yet
        assert receiver.wait_for(lambda reqs: any(r["path"] == "/hold" for r in reqs))
    finally:
        proc.kill()
        proc.wait(30)
    receiver.release.set()
    assert [e["target"].split(" ")[0] for e in _logged(exp)] == [
        "notify.command", "notify.urls[0]"]

    Notifier(exp).tick()                    # the console again
    # the command and the first URL had it already; the interrupted one is sent again
    assert receiver.paths() == ["/first", "/hold", "/hold", "/last"]
    assert len(inbox.read_text().splitlines()) == 1
    assert [(e["target"].split(" ")[0], e["status"]) for e in _logged(exp)] == [
        ("notify.command", "sent"), ("notify.urls[0]", "sent"), ("notify.urls[1]", "sent"),
        ("notify.urls[2]", "sent")]
    state = json.loads(exp.layout.notify_state.read_text())
    assert state["outbox"] == [] and state["delivered"] == {} and len(state["sent"]) == 1


def test_urls_alone_start_the_notifier(tmp_path, receiver):
    exp = _exp(tmp_path, urls=[receiver.url("json", "hook")])
    bridges = Bridges(exp, active=True)
    try:
        assert bridges.notifier is not None and bridges.exporter is None
        DecisionLog(exp.layout.console_events).record(1.0, "2d/1", "fail", "dataset error")
        assert receiver.wait_for(lambda reqs: len(reqs) == 1, timeout=60)
    finally:
        bridges.close()
    assert [e["status"] for e in _logged(exp)] == ["sent"]


def test_a_url_without_the_service_shape_is_refused_at_load_masked(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({
        "experiment": "n", "dataset": "d", "configurations": {"2d": {}},
        "notify": {"urls": ["ntfy://ntfy.sh/alerts", 7, f"tgram//123456789:{TOKEN}/42"]}}))
    with pytest.raises(ConfigError) as e:
        load_experiment(path)
    msg = str(e.value)
    assert str(path) in msg and "notify.urls[1]: expected a URL" in msg
    assert "notify.urls[2]: 'tgram//1...9:Z...2/42' is not a notification URL" in msg
    assert TOKEN not in msg and "notify.urls[0]" not in msg


def test_foldwatch_up_refuses_a_url_apprise_cannot_use_before_anything_starts(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({
        "experiment": "n", "dataset": "data", "results": "results", "configurations": {"2d": {}},
        "notify": {"urls": ["json://127.0.0.1:9/fine", "nosuchservice://host/x",
                            "slack://T1JJ3T3L2/B4KKR7QP9"]}}))     # Slack's third token missing
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "console.clients.cli", "up", str(path),
                          "--headless"], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "FOLDWATCH_NO_NVML": "1"})
    assert out.returncode == 2, out.stdout + out.stderr
    err = out.stderr
    assert "Traceback" not in err and str(path) in err
    assert "notify.urls[1]: Apprise cannot use 'nosuchservice://host/x'" in err
    assert "notify.urls[2]: Apprise cannot use 'slack://T...2/B...9'" in err
    assert "Slack" in err                                   # Apprise's own reason
    assert "T1JJ3T3L2" not in err and "B4KKR7QP9" not in err and "urls[0]" not in err
    assert not (tmp_path / "results").exists()               # nothing started, nothing written
    assert time.monotonic() - t0 < 60


def test_the_readme_examples_are_urls_apprise_accepts(tmp_path):
    """README, Notifications: every copy-paste URL passes the check `foldwatch up` makes."""
    import re

    from console.bridges.notify_urls import check_urls
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Notifications")
    section = readme[start:readme.index("\n## ", start + 1)]
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, re.S)]
    urls = blocks[0]["notify"]["urls"]
    assert {u.split("://")[0] for u in urls} >= {"ntfy", "ntfys", "tgram", "https", "slack",
                                                  "mailtos", "jsons"}
    exp = _exp(tmp_path, **blocks[0]["notify"])
    check_urls(exp)                        # raises ConfigError naming any it cannot use
    assert blocks[1]["notify"]["command"] == ["/usr/local/bin/foldwatch-to-chat"]
