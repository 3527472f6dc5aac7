"""A console killed at every step of a launch and of a state save, then started again on the
same folder: no fold ever has two trainers, and every run ends completed.

Real processes: `foldwatch up --headless` consoles (os._exit at a fault point, see
console/faults.py) over the stand-in trainer, which holds the run lock like the real one.
The cases run side by side (each in its own folder) to keep the test short.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from console.store.faults import CRASH_EXIT
from contracts.experiment import load_experiment
from contracts.jsonio import EventWriter, iter_jsonl
from engine_helpers import FAKE, REPO, write_experiment

NO_STAGES = {"evaluate": False, "find_best": False, "postprocess": False, "predict_test": False}
# (fault point, which pass). The stages are done already, so launches 1 and 2 are the folds;
# state saves: 1 at start-up, then 2-3 for fold 0's launch (intent, pid), 4-5 for fold 1's.
CASES = [("launch:intent", 1), ("launch:intent-saved", 1), ("launch:submitted", 1),
         ("launch:recorded", 2), ("save:prev", 3), ("save:written", 4), ("save:replaced", 5)]
SCRIPT = {"*": {"rate": 0.8}}


def _env(tmp: Path, crash: str | None) -> dict:
    script = tmp / "script.json"
    script.write_text(json.dumps(SCRIPT))
    env = dict(os.environ, FOLDWATCH_TRAINER=f"{sys.executable} {FAKE}",
               FAKE_TRAINER_SCRIPT=str(script), FOLDWATCH_NO_NVML="1", OMP_NUM_THREADS="1")
    env.pop("FOLDWATCH_CRASH_AT", None)
    if crash:
        env["FOLDWATCH_CRASH_AT"] = crash
    return env


def _console(exp: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "console.clients.cli", "up", str(exp), "--headless"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


class Census(threading.Thread):
    """Counts, every few ms, the live stand-in trainers of each run of each experiment."""

    def __init__(self, experiments: list[Path]) -> None:
        super().__init__(daemon=True)
        self.experiments = {str(p) for p in experiments}
        self.most: dict[tuple[str, str], int] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            count: dict[tuple[str, str], int] = {}
            for p in psutil.process_iter(["cmdline"]):
                cmd = p.info["cmdline"] or []
                if str(FAKE) not in cmd or "--experiment" not in cmd:
                    continue
                exp = cmd[cmd.index("--experiment") + 1]
                if exp not in self.experiments:
                    continue
                key = cmd[cmd.index(str(FAKE)) + 1] + " ".join(
                    cmd[cmd.index(f) + 1] for f in ("--configuration", "--fold") if f in cmd)
                count[(exp, key)] = count.get((exp, key), 0) + 1
            for k, n in count.items():
                self.most[k] = max(self.most.get(k, 0), n)
            self.done.wait(0.02)


def test_console_killed_at_every_step_never_runs_a_fold_twice(tmp_path):
    cases = []
    for i, (point, nth) in enumerate(CASES):
        d = tmp_path / f"case{i}"
        d.mkdir()
        exp = write_experiment(d, folds=(0, 1), epochs=3, pipeline=NO_STAGES)
        lay = load_experiment(exp).layout
        for stage in ("plan", "preprocess-2d"):         # done: only the folds are launched
            with EventWriter(lay.stage_dir(stage) / "metrics.jsonl") as w:
                w.write("start", stage=stage, pid=1, host="x")
                w.write("end", status="completed", error=None, exit_code=0)
        cases.append((f"{point}:{nth}", d, exp))
    census = Census([exp for _, _, exp in cases])
    census.start()
    try:
        first = [_console(exp, _env(d, crash)) for crash, d, exp in cases]
        for (crash, _, _), p in zip(cases, first):
            out, _ = p.communicate(timeout=120)
            assert p.returncode == CRASH_EXIT, f"{crash}: the console did not die there:\n{out}"
        second = [_console(exp, _env(d, None)) for _, d, exp in cases]
        outs = [p.communicate(timeout=180)[0] for p in second]
    finally:
        census.done.set()
        census.join()
    for (crash, d, exp), p, out in zip(cases, second, outs):
        assert p.returncode == 0, f"after a crash at {crash}, the pipeline did not complete:\n{out}"
        assert "Traceback" not in out, out
        lay = load_experiment(exp).layout
        for run_dir in [lay.fold_dir("2d", 0), lay.fold_dir("2d", 1)]:
            trained = [json.loads(l) for l in (run_dir / "fake_calls.jsonl").read_text().splitlines()]
            busy = run_dir / "fake_busy.jsonl"
            # one trainer per run, ever: never relaunched beside a live one, never restarted
            assert len(trained) == 1, f"{crash}: {run_dir.name} was started {len(trained)} times"
            assert not busy.exists(), f"{crash}: a second copy was started: {busy.read_text()}"
            starts = [e for e in iter_jsonl(run_dir / "metrics.jsonl") if e["event"] == "start"]
            assert len(starts) == 1
        state = json.loads(lay.state.read_text())
        assert {r["state"] for r in state["runs"].values()} == {"completed"}, (crash, state)
    assert census.most and max(census.most.values()) == 1, census.most


def test_supervisor_killed_while_its_trainer_is_still_starting_adopts_it(tmp_path):
    """The hole a stand-in that locks at once never shows: the supervisor dies right after
    starting a trainer that takes seconds to start (the real one imports torch); the next
    one finds the process by its launch token instead of launching a second."""
    exp = write_experiment(tmp_path, folds=(0,), epochs=3, pipeline=NO_STAGES)
    lay = load_experiment(exp).layout
    for stage in ("plan", "preprocess-2d"):
        with EventWriter(lay.stage_dir(stage) / "metrics.jsonl") as w:
            w.write("start", stage=stage, pid=1, host="x")
            w.write("end", status="completed", error=None, exit_code=0)
    census = Census([exp])
    census.start()
    try:
        env = dict(_env(tmp_path, "launch:submitted:1"), FAKE_TRAINER_STARTUP_S="3")
        first = _console(exp, env)
        out, _ = first.communicate(timeout=120)
        assert first.returncode == CRASH_EXIT, out
        env = dict(_env(tmp_path, None), FAKE_TRAINER_STARTUP_S="3")
        second = _console(exp, env)
        out, _ = second.communicate(timeout=180)
    finally:
        census.done.set()
        census.join()
    assert second.returncode == 0, out
    run_dir = lay.fold_dir("2d", 0)
    assert len((run_dir / "fake_calls.jsonl").read_text().splitlines()) == 1
    assert not (run_dir / "fake_busy.jsonl").exists()
    adopted = [e for e in iter_jsonl(lay.console_events) if e.get("action") == "adopt"]
    assert len(adopted) == 1 and "found by its token" in adopted[0]["reason"], adopted
    assert census.most and max(census.most.values()) == 1, census.most
