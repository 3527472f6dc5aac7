"""SIGKILL of the supervisor at random instants across a whole experiment, with the REAL
trainer (which spends seconds importing torch after it is started): every run completes,
no run ever has a second trainer process, and every trainer that ran is in events.jsonl."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time

import psutil

from console.protocol import attach
from contracts.experiment import load_experiment
from contracts.jsonio import iter_jsonl
from contracts.runlock import probe
from engine_helpers import real_trainer_experiment
from supervisor_helpers import end_supervision, foldwatch, wait_for

TINY = {"2d": {"patch_size": "auto", "batch_size": 4, "epochs": 6, "iterations_per_epoch": 3,
               "val_iterations": 1, "base_features": 4, "max_features": 16, "num_workers": 0,
               "tta_mirroring": False}}
KILLS = 10


class Census(threading.Thread):
    """The live trainer processes of each run of one experiment, counted every 20 ms."""

    def __init__(self, exp_path) -> None:
        super().__init__(daemon=True)
        self.exp = str(exp_path)
        self.most: dict[str, int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            count: dict[str, int] = {}
            for p in psutil.process_iter(["cmdline"]):
                cmd = p.info["cmdline"] or []
                if "trainer" not in cmd or self.exp not in cmd:
                    continue
                try:                       # only live trainers (not zombies of a dead parent)
                    if p.status() == psutil.STATUS_ZOMBIE:
                        continue
                except psutil.Error:
                    continue
                i = cmd.index("trainer")
                key = " ".join([cmd[i + 1]] + [cmd[cmd.index(f) + 1] for f in
                                               ("--configuration", "--fold") if f in cmd])
                count[key] = count.get(key, 0) + 1
            for k, n in count.items():
                self.most[k] = max(self.most.get(k, 0), n)
            self.done.wait(0.02)


def _launches(events) -> int:
    return sum(1 for e in events if e.get("action") == "launch")


def test_supervisor_killed_at_random_instants_never_runs_a_trainer_twice(tmp_path, monkeypatch):
    path = real_trainer_experiment(tmp_path, monkeypatch, "chaos", TINY, (0, 1), {
        "evaluate": True, "find_best": False, "postprocess": False, "predict_test": False})
    lay = load_experiment(path).layout
    home = lay.supervisor_home()
    seed = int(os.environ.get("FOLDWATCH_CHAOS_SEED") or time.time())
    rng = random.Random(seed)
    census = Census(path)
    census.start()
    kills = 0
    try:
        attach.ensure(path, home, explicit=True, by="test")
        while kills < KILLS:
            seen = _launches(iter_jsonl(lay.console_events))
            if kills % 3 == 0:     # right after a launch: the trainer is still importing torch
                wait_for(lambda: _launches(iter_jsonl(lay.console_events)) > seen
                         or _finished(path), timeout=300, every=0.01, what="a launch")
            else:
                time.sleep(rng.uniform(0.2, 2.5))   # a random instant: this IS the test's input
            if _finished(path):
                break
            holder = probe(home.lock)
            if holder and holder.get("pid"):
                os.kill(holder["pid"], signal.SIGKILL)
                kills += 1
                wait_for(lambda: probe(home.lock) is None, what="the lock to be free")
            out = foldwatch("status", path)       # any command starts it again
            assert out.returncode == 0, out.stderr
        wait_for(lambda: _finished(path), timeout=600, every=0.5, what="the experiment")
    finally:
        census.done.set()
        census.join()
        end_supervision(path)
    status = json.loads(foldwatch("status", path, "--json").stdout)
    assert kills >= 6, f"the experiment ended after {kills} kills (seed {seed})"
    assert {r["key"]: r["state"] for r in status["runs"]} == {
        r["key"]: "completed" for r in status["runs"]}, (seed, status["runs"])
    assert census.most and max(census.most.values()) == 1, (seed, census.most)
    decisions = list(iter_jsonl(lay.console_events))
    named = {d.get("pid") for d in decisions if d.get("action") == "launch"}
    named |= {int(w) for d in decisions if d.get("action") == "adopt"
              for w in d["reason"].split() if w.isdigit()}
    for key in ("plan", "preprocess-2d", "2d/0", "2d/1", "crossval-2d"):
        run_dir = lay.fold_dir("2d", int(key[-1])) if "/" in key else lay.stage_dir(key)
        starts = [e for e in iter_jsonl(run_dir / "metrics.jsonl") if e["event"] == "start"]
        # every trainer that ran is one the supervisors launched or adopted, said so
        assert {s["pid"] for s in starts} <= named, (seed, key, starts)
        stderr = (run_dir / "stderr.log").read_text() if (run_dir / "stderr.log").exists() else ""
        assert "already in use by" not in stderr, (seed, key, stderr[-2000:])


def _finished(path) -> bool:
    try:
        data = json.loads(load_experiment(path).layout.supervisor_home().snapshot.read_text())
    except (OSError, ValueError):
        return False
    snap = data["snapshot"]
    return snap["finished"] and snap["succeeded"]
