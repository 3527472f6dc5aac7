"""How fast a client hears from the supervisor: an action's answer, a view's lag, and
`foldwatch status`, each against a baseline measured in the same run.

A detached supervisor runs an experiment of stand-in trainers (tests/fake_trainer.py), then:
- action round trip: `SupervisorClient.set_watchdog` (request file -> supervisor -> reply
  file) vs the same action on an in-process engine (the old console);
- view lag: how long after an action its effect shows in the client's snapshot;
- `foldwatch status`: wall time of the whole process against a supervisor vs the old way
  (an offline engine built from the files, as before this round), and vs `foldwatch
  --help` (the interpreter and argparse alone).

    python bench/supervisor_latency.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def _median_ms(xs: list[float]) -> str:
    return f"{1000 * statistics.median(xs):7.1f} ms (min {1000 * min(xs):.1f}, max {1000 * max(xs):.1f})"


def _wall(argv: list[str], env: dict, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, check=True)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    from console.engine.core import Engine
    from console.protocol import attach
    from console.protocol.client import SupervisorClient
    from contracts.experiment import load_experiment
    from engine_helpers import FAKE, cpu_sampler, write_experiment

    tmp = Path(tempfile.mkdtemp(prefix="fw-latency-"))
    script = tmp / "script.json"
    script.write_text('{"*": {"rate": 2.0}}')
    env = dict(os.environ, FOLDWATCH_TRAINER=f"{sys.executable} {FAKE}",
               FAKE_TRAINER_SCRIPT=str(script), FOLDWATCH_NO_NVML="1",
               XDG_STATE_HOME=str(tmp / "xdg"), PYTHONPATH=str(ROOT))
    os.environ.update(env)
    path = write_experiment(tmp, folds=(0, 1, 2, 3), epochs=1000,
                            pipeline={"evaluate": False, "find_best": False,
                                      "postprocess": False, "predict_test": False})
    exp = load_experiment(path)
    home = exp.layout.supervisor_home()
    cli = [sys.executable, "-m", "console.clients.cli"]
    try:
        attach.ensure(path, home, explicit=True, by="bench")
        client = SupervisorClient(path, home, kind="bench")
        while not any(r.state == "running" for r in client.poll().runs):
            time.sleep(0.1)
        answer, lag = [], []
        for i in range(args.rounds):
            on = i % 2 == 1
            t = time.perf_counter()
            client.set_watchdog(on)
            answer.append(time.perf_counter() - t)
            while client.poll().watchdog_enabled != on:
                time.sleep(0.01)
            lag.append(time.perf_counter() - t)
        status = _wall([*cli, "status", str(path)], env, max(5, args.rounds // 3))
        helptime = _wall([*cli, "--help"], env, max(5, args.rounds // 3))
        # the old `status`: an engine built from the files, as a whole process, on a copy of
        # the same run folders that no supervisor ever ran on (status takes that path then)
        offline_path = tmp_copy(path, tmp, "offline")
        shutil.copytree(exp.layout.root, tmp / "offline-results" / exp.experiment,
                        ignore=shutil.ignore_patterns("console"))
        offline = _wall([*cli, "status", str(offline_path)], env, max(5, args.rounds // 3))
        direct = []
        with Engine(tmp_copy(path, tmp, "direct"), sampler=cpu_sampler(), hold=True) as eng:
            for i in range(args.rounds):
                t = time.perf_counter()
                eng.set_watchdog(i % 2 == 1)
                eng.poll()
                direct.append(time.perf_counter() - t)
    finally:
        subprocess.run([*cli, "down", str(path)], cwd=ROOT, env=env, capture_output=True)
        subprocess.run([*cli, "stop", str(path)], cwd=ROOT, env=env, capture_output=True)
    print(f"supervisor latency, {args.rounds} rounds, 4 stand-in runs training")
    print(f"  action answered (client round trip)      {_median_ms(answer)}")
    print(f"  ... in-process engine action + tick      {_median_ms(direct)}")
    print(f"  action visible in the client's view      {_median_ms(lag)}")
    print(f"  `foldwatch status` (whole process)       {_median_ms(status)}")
    print(f"  `foldwatch --help` (whole process)       {_median_ms(helptime)}")
    print(f"  `foldwatch status`, engine from the files {_median_ms(offline)}")
    print(f"    (the old way, whole process, same run folders, no supervisor)")
    print(f"  ratio status / old way                     "
          f"{statistics.median(status) / statistics.median(offline):.2f}")


def tmp_copy(path: Path, tmp: Path, name: str) -> Path:
    """The same experiment under another results folder (its own engine, no supervisor)."""
    other = tmp / f"{name}.yaml"
    other.write_text(path.read_text().replace("results: results", f"results: {name}-results"))
    return other


if __name__ == "__main__":
    main()
