"""`foldwatch up --headless` with export and notify: the bridges beside a real console."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from contracts.experiment import load_experiment
from engine_helpers import REPO, use_fake_trainer, write_experiment
from http_receiver import Receiver

APPEND = "import sys; d = sys.stdin.read(); open(sys.argv[1], 'a').write(d.replace('\\n', ' ') + '\\n')"
NO_STAGES = {"evaluate": False, "find_best": False, "postprocess": False, "predict_test": False}


def test_headless_console_exports_and_notifies_once(tmp_path, monkeypatch):
    inbox = tmp_path / "inbox.jsonl"
    path = write_experiment(tmp_path, folds=(0, 1), epochs=4, pipeline=NO_STAGES)
    data = yaml.safe_load(path.read_text())
    data["export"] = {"tensorboard": True}
    receiver = Receiver()                     # a chat service on loopback (json://)
    data["notify"] = {"command": [sys.executable, "-c", APPEND, str(inbox)], "disk_free_gb": 0,
                      "urls": [receiver.url("json", "chat")]}
    path.write_text(yaml.safe_dump(data))
    use_fake_trainer(monkeypatch, tmp_path, {"2d/1": {"then": "exit", "code": 3, "at": 1}})
    env = dict(os.environ, FOLDWATCH_NO_NVML="1")

    def up():
        return subprocess.run([sys.executable, "-m", "console.clients.cli", "up", str(path),
                               "--headless"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120)

    out = up()
    assert out.returncode == 1, out.stdout + out.stderr          # 2d/1 failed for good
    out = up()                                                   # a console restart
    receiver.close()
    chat = [json.loads(r["body"])["title"] for r in receiver.requests]
    assert sorted(chat) == ["foldwatch t: 2d/1 failed", "foldwatch t: finished, 1 run(s) not "
                            "completed"], chat                  # once each, like the command
    msgs = [json.loads(x) for x in inbox.read_text().splitlines()]
    assert sorted(m["event"] for m in msgs) == ["experiment_finished", "run_failed"]
    failed = next(m for m in msgs if m["event"] == "run_failed")
    assert failed["run"] == "2d/1" and "dataset error" in failed["reason"]
    finished = next(m for m in msgs if m["event"] == "experiment_finished")
    assert finished["runs"]["2d/0"] == "completed" and finished["failed"] == ["2d/1"]
    exp = load_experiment(path)
    tb = EventAccumulator(str(exp.layout.tensorboard("2d", 0)))
    tb.Reload()
    assert [s.step for s in tb.Scalars("train/loss")] == [0, 1, 2, 3]
