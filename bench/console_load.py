"""Console engine load figures (issue #4): log ingest time, steady CPU and RSS with 8 runs
writing 50 lines/s, RSS after 10x more log lines, crash-to-relaunch latency.

Run: .venv/bin/python bench/console_load.py [--quick]
Targets: ingest of 1,000,000 lines < 2 s; steady CPU < 5% of a core; relaunch < 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def write_log(path: Path, lines: int) -> None:
    """A realistic metrics.jsonl: a start, iter lines, an epoch line every 250 iterations."""
    with open(path, "w") as f:
        f.write(json.dumps({"t": 0.0, "event": "start", "configuration": "3d_fullres", "fold": 0,
                            "pid": 1, "host": "h", "device": "cuda:0", "attempt": 1,
                            "resumed_from": None, "epochs": 1000, "iterations_per_epoch": 250,
                            "batch_size": 2}) + "\n")
        t, e, i = 0.0, 0, 0
        buf = []
        for n in range(lines - 1):
            t += 0.1
            i += 1
            if i > 250:
                buf.append(json.dumps({"t": t, "event": "epoch", "epoch": e, "train_loss": 0.5,
                                       "val_loss": 0.6, "val_dice": 0.7,
                                       "val_dice_per_class": {"1": 0.7, "2": 0.6},
                                       "ema_dice": 0.7, "lr": 0.01, "epoch_s": 25.0,
                                       "data_wait_frac": 0.05, "peak_mem_mb": 9000.0}))
                e, i = e + 1, 0
            else:
                buf.append(json.dumps({"t": t, "event": "iter", "epoch": e, "iter": i,
                                       "loss": 0.5123, "lr": 0.0099, "samples_per_s": 12.3}))
            if len(buf) >= 10000:
                f.write("\n".join(buf) + "\n")
                buf = []
        if buf:
            f.write("\n".join(buf) + "\n")


INGEST = r"""
import resource, sys, time
sys.path.insert(0, {repo!r})
from console.store.tailer import Tailer
from console.engine.runmetrics import RunMetrics
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
m = RunMetrics(); t = Tailer({path!r}, collapse_iter={collapse})
t0 = time.perf_counter(); t.read_each(m.feed); dt = time.perf_counter() - t0
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(dt, rss1 - rss0, rss1, t.lines, m.epoch)
"""


def ingest(path: Path, collapse: bool = True) -> tuple[float, float, float, int]:
    """(seconds, peak RSS growth MiB, peak RSS MiB, lines) in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", INGEST.format(repo=str(REPO), path=str(path),
                                                               collapse=collapse)],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1]) / 1024, int(out[2]) / 1024, int(out[3])


def baseline_json_loads(path: Path) -> float:
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        for raw in f:
            json.loads(raw)
    return time.perf_counter() - t0


def rss_mib() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def steady_load(tmp: Path, seconds: float, tick: float) -> dict:
    """8 stand-in runs writing ~50 lines/s each under one engine polled every `tick` s."""
    import psutil
    from console.engine.core import Engine
    from engine_helpers import cpu_sampler, write_experiment
    os.environ["FOLDWATCH_TRAINER"] = f"{sys.executable} {REPO / 'tests' / 'fake_trainer.py'}"
    script = tmp / "script.json"
    # 48 iter lines + epoch + checkpoint per 1 s epoch = 50 lines/s per run
    script.write_text(json.dumps({"*": {"rate": 1.0, "iters": 48}}))
    os.environ["FAKE_TRAINER_SCRIPT"] = str(script)
    exp = write_experiment(tmp, folds=(0, 1, 2, 3), configurations=("2d", "3d_fullres"),
                           epochs=100000, devices={"cpu_slots": 8},
                           pipeline={"evaluate": False, "find_best": False,
                                     "postprocess": False, "predict_test": False})
    eng = Engine(exp, sampler=cpu_sampler())
    me = psutil.Process()
    try:
        deadline = time.monotonic() + 60
        while sum(r.state == "running" for r in eng.poll().runs) < 8:
            assert time.monotonic() < deadline, "runs did not start"
            time.sleep(tick)
        time.sleep(2.0)
        eng.poll()
        lines0 = sum(r.tailer.lines for r in eng.runs.values())
        cpu0, w0 = me.cpu_times(), time.monotonic()
        rss_start = rss_mib()
        while time.monotonic() - w0 < seconds:
            eng.poll()
            time.sleep(tick)
        cpu1, w1 = me.cpu_times(), time.monotonic()
        lines1 = sum(r.tailer.lines for r in eng.runs.values())
        rss_end = rss_mib()
        used = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        return {"cpu_pct": 100 * used / (w1 - w0), "rss_start": rss_start, "rss_end": rss_end,
                "lines_per_s": (lines1 - lines0) / (w1 - w0), "engine": eng}
    except BaseException:
        eng.stop_all()
        eng.close()
        raise


def relaunch_latency(eng, tries: int, tick: float) -> list[float]:
    """SIGKILL a running fold; seconds until its replacement process is launched (backoff 0)."""
    import signal
    out = []
    for n in range(tries):
        # a different run each time: killing one run repeatedly before it completes an
        # epoch is a crash loop, which the watchdog rightly gives up on
        running = [r for r in eng.runs.values() if r.state == "running" and r.handle]
        run = running[n % len(running)]
        pid = run.handle.pid
        t0 = time.time()
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{run.key} not relaunched: {run.state} {run.message} "
                                   f"{[(d.action, d.reason) for d in eng.decisions_for(run.key)]}")
            eng.poll()
            if run.handle is not None and run.handle.pid != pid:
                out.append(time.time() - t0)
                break
            time.sleep(tick)
        deadline = time.monotonic() + 30
        while run.state != "running":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{run.key} did not come back: {run.state} {run.message} "
                                   f"{[(d.action, d.reason) for d in eng.decisions_for(run.key)]}")
            eng.poll()
            time.sleep(tick)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shorter steady-load window")
    args = ap.parse_args()
    tick = 0.5
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        big, small = tmp / "big.jsonl", tmp / "small.jsonl"
        write_log(big, 1_000_000)
        write_log(small, 100_000)
        size = big.stat().st_size / 2**20
        base = baseline_json_loads(big)
        dt, grow, peak, lines = ingest(big)
        dt_full, *_ = ingest(big, collapse=False)
        dt_s, grow_s, peak_s, _ = ingest(small)
        print(f"ingest {lines:,} lines ({size:.0f} MiB): {dt:.2f} s "
              f"(target < 2 s; every line decoded: {dt_full:.2f} s; "
              f"baseline `for line: json.loads`: {base:.2f} s, ratio {dt / base:.2f})")
        print(f"peak RSS growth while ingesting: 100k lines {grow_s:.1f} MiB, "
              f"1M lines (10x) {grow:.1f} MiB (ratio {grow / max(grow_s, 0.1):.2f})")
        sub = tmp / "steady"
        sub.mkdir()
        window = 10.0 if args.quick else 30.0
        res = steady_load(sub, window, tick)
        eng = res["engine"]
        try:
            print(f"steady: 8 runs, {res['lines_per_s']:.0f} lines/s in total, poll every "
                  f"{tick:g} s: engine CPU {res['cpu_pct']:.2f}% of a core (target < 5%), "
                  f"RSS {res['rss_start']:.1f} -> {res['rss_end']:.1f} MiB")
            # 10x more lines: append nine times what each run wrote so far (one write each,
            # O_APPEND, so the stand-in's own lines stay whole), then let the engine ingest
            total0 = sum(r.tailer.lines for r in eng.runs.values())
            rss0 = rss_mib()
            for r in eng.runs.values():
                if r.job.kind != "fold" or not r.tailer.lines:
                    continue
                ev = {"t": time.time(), "event": "iter", "epoch": 0, "iter": 1, "loss": 0.5,
                      "lr": 0.01, "samples_per_s": 10.0}
                ep = {"t": time.time(), "event": "epoch", "epoch": 0, "train_loss": 0.5,
                      "val_loss": 0.5, "val_dice": 0.5, "val_dice_per_class": {"1": 0.5},
                      "ema_dice": 0.5, "lr": 0.01, "epoch_s": 1.0, "data_wait_frac": 0.0,
                      "peak_mem_mb": 1.0}
                block = (json.dumps(ev) + "\n") * 49 + json.dumps(ep) + "\n"
                with open(r.job.run_dir / "metrics.jsonl", "a") as f:
                    f.write(block * (r.tailer.lines * 9 // 50 + 1))
            target = total0 * 10
            t0 = time.monotonic()
            while sum(r.tailer.lines for r in eng.runs.values()) < target and \
                    time.monotonic() - t0 < 60:
                eng.poll()
                time.sleep(tick)
            total1 = sum(r.tailer.lines for r in eng.runs.values())
            print(f"RSS after {total1 / max(total0, 1):.1f}x more lines ({total1:,} in all): "
                  f"{rss0:.1f} -> {rss_mib():.1f} MiB")
            eng.exp = eng.exp.model_copy(update={"watchdog": eng.exp.watchdog.model_copy(
                update={"backoff_initial_s": 0.0, "backoff_max_s": 0.0})})
            lat = relaunch_latency(eng, 5, 0.05)
            print(f"crash-to-relaunch (backoff 0, poll every 0.05 s): "
                  f"median {sorted(lat)[len(lat) // 2] * 1000:.0f} ms, "
                  f"max {max(lat) * 1000:.0f} ms (target < 1 s); with the UI's {tick:g} s tick "
                  f"add up to {tick:g} s")
        finally:
            eng.stop_all()
            deadline = time.monotonic() + 20
            while any(r.handle for r in eng.runs.values()) and time.monotonic() < deadline:
                eng.poll()
                time.sleep(0.1)
            eng.close()


if __name__ == "__main__":
    main()
