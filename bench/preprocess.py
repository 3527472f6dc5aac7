"""Preprocessing throughput on the demo dataset: cases/second, 1 process vs the pool.

Generates the demo data into a temp dir, plans it, then preprocesses 3d_fullres twice from
scratch: with one process (baseline) and with the pool; prints both and the ratio.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def trainer(*args: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "trainer", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def last_summary_seconds(log: Path) -> float:
    """The work time the preprocess run logged (process start and imports excluded)."""
    from contracts.jsonio import iter_jsonl
    return [e for e in iter_jsonl(log) if e["event"] == "summary"][-1]["seconds"]


def main() -> None:
    workers = int(sys.argv[1]) if len(sys.argv) > 1 else min(4, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "Dataset900_Demo"
        trainer("make-demo-data", str(data))
        exp = {"experiment": "bench", "dataset": str(data), "results": str(tmp / "results"),
               "configurations": {"3d_fullres": {"base_features": 8, "max_features": 64}}}
        path = tmp / "bench.yaml"
        path.write_text(yaml.safe_dump(exp))
        trainer("plan", "--experiment", str(path), "--skip-check")
        log = tmp / "results" / "bench" / "stages" / "preprocess-3d_fullres" / "metrics.jsonl"
        cache = tmp / "results" / "bench" / "preprocessed" / "3d_fullres"
        n = len(list((data / "imagesTr").glob("*_0000.nii.gz")))
        rates = {}
        for w in (1, workers):
            shutil.rmtree(cache, ignore_errors=True)
            trainer("preprocess", "--experiment", str(path), "--configuration", "3d_fullres",
                    "--workers", str(w))
            rates[w] = n / last_summary_seconds(log)
        t0 = time.perf_counter()
        trainer("preprocess", "--experiment", str(path), "--configuration", "3d_fullres")
        skip = n / (time.perf_counter() - t0)
    print(f"preprocess demo 3d_fullres ({n} cases, {os.cpu_count()} cores):")
    print(f"  1 process:   {rates[1]:.2f} cases/s (baseline)")
    print(f"  {workers} processes: {rates[workers]:.2f} cases/s  ratio {rates[workers] / rates[1]:.2f}x")
    print(f"  re-run, all up to date: {skip:.1f} cases/s (includes process start)")


if __name__ == "__main__":
    main()
