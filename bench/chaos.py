"""Chaos figures for issue #9 (printed, not asserted): kill trainers, kill the console, hang a
trainer, and count what survives.

- trainer kills -> runs completed, unloadable checkpoints, epochs lost per kill
- console kills (SIGKILL at random instants, restarted on the same folder) -> duplicate
  trainers (must be 0: at no instant two live trainers for one run)
- detection time of a hung trainer vs watchdog.stall_timeout_s

Uses the stand-in trainer (tests/fake_trainer.py, which holds the run lock like the real one)
so it runs in about two minutes on a laptop. Run: .venv/bin/python bench/chaos.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

NO_STAGES = {"evaluate": False, "find_best": False, "postprocess": False, "predict_test": False}


def _env(tmp: Path, script: dict) -> dict:
    from engine_helpers import FAKE
    (tmp / "script.json").write_text(json.dumps(script))
    return dict(os.environ, FOLDWATCH_TRAINER=f"{sys.executable} {FAKE}",
                FAKE_TRAINER_SCRIPT=str(tmp / "script.json"), FOLDWATCH_NO_NVML="1",
                OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))


def _epochs_lost(metrics: Path) -> tuple[list[int], int]:
    """Per attempt that ended without `end` (killed): epochs announced minus where the next
    attempt resumed; and the number of starts."""
    from contracts.jsonio import iter_jsonl
    lost, starts, done, open_attempt = [], 0, 0, False
    for ev in iter_jsonl(metrics):
        if ev["event"] == "start":
            if open_attempt:
                lost.append(max(0, done - (ev.get("resumed_from") or 0)))
            starts += 1
            open_attempt = True
        elif ev["event"] == "epoch":
            done = ev["epoch"] + 1
        elif ev["event"] == "end":
            open_attempt = False
    return lost, starts


def _checkpoint_ok(path: Path) -> bool:
    try:
        int(path.read_text())          # the stand-in's checkpoint: the next epoch, as text
        return True
    except (OSError, ValueError):
        return False


def trainer_kills(tmp: Path, folds: int, every_s: float) -> None:
    from console.engine.core import Engine
    from engine_helpers import cpu_sampler, write_experiment
    os.environ.update(_env(tmp, {"*": {"rate": 0.4, "iters": 4}, "plan": {"rate": 0.02},
                                 "preprocess-2d": {"rate": 0.02}}))
    exp = write_experiment(tmp, folds=tuple(range(folds)), epochs=12, pipeline=NO_STAGES,
                           devices={"cpu_slots": folds},
                           watchdog={"max_restarts": 50, "backoff_initial_s": 0.1,
                                     "backoff_max_s": 0.5})
    t0 = time.monotonic()
    with Engine(exp, sampler=cpu_sampler(), chaos_every_s=every_s,
                rng=random.Random(9)) as eng:
        snap = eng.poll()
        while not snap.finished and time.monotonic() - t0 < 120:
            time.sleep(0.05)
            snap = eng.poll()
        kills = sum(d.action == "chaos" for d in eng.decisions.recent)
        eng.chaos.every_s = None
        completed = sum(r.state == "completed" for r in snap.runs if r.kind == "fold")
        lost, bad = [], 0
        for r in eng.runs.values():
            if r.job.kind != "fold":
                continue
            lost += _epochs_lost(r.job.run_dir / "metrics.jsonl")[0]
            bad += not _checkpoint_ok(r.job.run_dir / "checkpoints" / "latest.pt")
    print(f"trainer kills: {kills} SIGKILLs over {time.monotonic() - t0:.0f}s -> "
          f"{completed}/{folds} folds completed, {bad} unloadable checkpoints, "
          f"epochs lost per kill: {sum(lost) / max(1, len(lost)):.2f} "
          f"(max {max(lost, default=0)}, {len(lost)} killed attempts seen)")


class Census(threading.Thread):
    """The most live stand-in trainers seen at once for each run of one experiment."""

    def __init__(self, exp: Path) -> None:
        super().__init__(daemon=True)
        self.exp, self.most, self.done = str(exp), {}, threading.Event()

    def run(self) -> None:
        import psutil
        from engine_helpers import FAKE
        while not self.done.is_set():
            count: dict[str, int] = {}
            for p in psutil.process_iter(["cmdline"]):
                cmd = p.info["cmdline"] or []
                if str(FAKE) in cmd and self.exp in cmd:
                    key = cmd[cmd.index(str(FAKE)) + 1] + " ".join(   # command, cfg, fold
                        cmd[cmd.index(f) + 1] for f in ("--configuration", "--fold") if f in cmd)
                    count[key] = count.get(key, 0) + 1
            for k, n in count.items():
                self.most[k] = max(self.most.get(k, 0), n)
            self.done.wait(0.02)


def console_kills(tmp: Path, kills: int) -> None:
    from contracts.experiment import load_experiment
    from engine_helpers import write_experiment
    env = _env(tmp, {"*": {"rate": 0.5}, "plan": {"rate": 0.05},
                     "preprocess-2d": {"rate": 0.05}})
    exp = write_experiment(tmp, folds=(0, 1, 2, 3), epochs=8, pipeline=NO_STAGES,
                           devices={"cpu_slots": 4})
    lay = load_experiment(exp).layout
    census = Census(exp)
    census.start()
    rng = random.Random(3)
    t0 = time.monotonic()
    done = killed = 0
    cmd = [sys.executable, "-m", "console.clients.cli", "up", str(exp), "--headless"]
    try:
        for i in range(kills + 50):
            p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
            if killed < kills:
                time.sleep(rng.uniform(0.8, 2.5))
                if p.poll() is None:
                    p.send_signal(signal.SIGKILL)
                    killed += 1
                p.wait()
                continue
            if p.wait(timeout=120) == 0:
                done = 1
                break
    finally:
        census.done.set()
        census.join()
    dup = sum(n - 1 for n in census.most.values() if n > 1)
    busy = sum(1 for _ in lay.root.rglob("fake_busy.jsonl"))
    starts = {d.name: _epochs_lost(d / "metrics.jsonl")[1] for d in (lay.root / "2d").iterdir()}
    print(f"console kills: {killed} SIGKILLs of `foldwatch up` -> pipeline "
          f"{'completed' if done else 'NOT completed'} in {time.monotonic() - t0:.0f}s; "
          f"duplicate trainers: {dup} (most at once per run: {max(census.most.values(), default=0)}); "
          f"second copies refused by the run lock: {busy}; trainer starts per fold: {starts}")


def stall_detection(tmp: Path, stall_s: float) -> None:
    from console.engine.core import Engine
    from engine_helpers import cpu_sampler, write_experiment
    os.environ.update(_env(tmp, {"2d/0": [{"then": "hang", "at": 1, "ignore_term": True}, {}],
                                 "*": {"rate": 0.05}}))
    exp = write_experiment(tmp, folds=(0,), epochs=2, pipeline=NO_STAGES,
                           watchdog={"stall_timeout_s": stall_s, "grace_period_s": 1})
    with Engine(exp, sampler=cpu_sampler()) as eng:
        run = eng.runs["2d/0"]
        snap = eng.poll()
        while not snap.finished:
            time.sleep(0.05)
            snap = eng.poll()
        from contracts.jsonio import iter_jsonl
        evs = list(iter_jsonl(run.job.run_dir / "metrics.jsonl"))
        first_end = next(i for i, e in enumerate(evs) if e["event"] == "start" and i > 0)
        last_t = max(e["t"] for e in evs[:first_end])
        stall = next(json.loads(l) for l in eng.layout.console_events.read_text().splitlines()
                     if '"stall"' in l)
    print(f"stall detection: hung trainer detected {stall['t'] - last_t:.2f}s after its last "
          f"event (stall_timeout_s={stall_s:g}, poll every 0.05s); SIGKILL after the 1s grace "
          f"period; run completed: {snap.succeeded}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for name in ("kills", "consoles", "stall"):
            (root / name).mkdir()
        trainer_kills(root / "kills", folds=4, every_s=1.0 if not args.quick else 2.0)
        console_kills(root / "consoles", kills=10 if not args.quick else 4)
        stall_detection(root / "stall", stall_s=2.0)


if __name__ == "__main__":
    main()
