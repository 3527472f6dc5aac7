"""Ensemble prediction cost: a 5-fold ensemble of one case vs 5 single-fold predictions.

Generates a small demo dataset, plans 3d_fullres with the demo settings, and (unless
--experiment points at trained folds) saves 5 randomly initialised networks as the folds'
final.pt: the arithmetic is the same as with trained weights. Each variant runs in a fresh
process so that its peak memory (max RSS) is its own. Prints seconds per case, the overhead
ratio ensemble / (5 x single) and peak RSS.
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

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _trainer(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "trainer", *args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def setup(tmp: Path, mirror: bool) -> Path:
    data = tmp / "Dataset900_Demo"
    _trainer("make-demo-data", str(data), "--train", "5", "--test", "1")
    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    cfg = dict(demo["configurations"]["3d_fullres"], tta_mirroring=mirror)
    exp = tmp / "bench.yaml"
    exp.write_text(yaml.safe_dump({"experiment": "bench", "dataset": str(data),
                                   "results": str(tmp / "results"),
                                   "configurations": {"3d_fullres": cfg}}))
    _trainer("plan", "--experiment", str(exp))
    import torch

    from contracts.experiment import load_experiment
    from trainer.training.checkpoint import save_checkpoint
    from trainer.training.network import build_network
    from trainer.planning.plans import Plan
    e = load_experiment(exp)
    plan = Plan.load(e.layout.plan("3d_fullres"))
    for k in range(5):
        torch.manual_seed(k)
        save_checkpoint(e.layout.checkpoints("3d_fullres", k) / "final.pt",
                        {"model": build_network(plan).state_dict(), "hparams": {}})
    return exp


def variant(exp_path: str, which: str, repeats: int) -> None:
    """Child process: time one variant on the test case, print JSON."""
    import resource

    import torch

    from contracts.experiment import load_experiment
    from trainer.data.datasets import load_dataset
    from trainer.runtime.device import cpu_threads
    from trainer.data.geometry import preprocess_image, to_original
    from trainer.inference.sliding_window import load_fold_network, predict_probabilities
    from trainer.planning.plans import Plan

    torch.set_num_threads(cpu_threads())
    exp = load_experiment(exp_path)
    cfg = exp.configurations["3d_fullres"]
    plan = Plan.load(exp.layout.plan("3d_fullres"))
    nets = [load_fold_network(exp.layout.checkpoints("3d_fullres", k) / "final.pt", plan)
            for k in exp.folds]
    case = load_dataset(exp.dataset_path).test_cases[0]
    data, props = preprocess_image(case.images, plan)
    groups = [nets] if which == "ensemble" else [[n] for n in nets]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for g in groups:
            to_original(predict_probabilities(g, data, plan, mirror=cfg.tta_mirroring,
                                              overlap=cfg.sliding_window_overlap), props)
        best = min(best, time.perf_counter() - t0)
    print(json.dumps({"seconds": best, "max_rss_mb":
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirror", action="store_true", help="with mirror TTA (8x the work in 3d)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--experiment", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        variant(args.experiment, args.variant, args.repeats)
        return
    with tempfile.TemporaryDirectory() as tmp:
        exp = setup(Path(tmp), args.mirror)
        print("3d_fullres, demo settings, 5 randomly initialised folds "
              f"(same arithmetic as trained ones), mirror TTA {'on' if args.mirror else 'off'}")
        res = {}
        for which in ("single", "ensemble"):
            out = subprocess.run([sys.executable, __file__, "--variant", which, "--experiment",
                                  str(exp), "--repeats", str(args.repeats)], check=True,
                                 capture_output=True, text=True, cwd=ROOT).stdout
            res[which] = json.loads(out.strip().splitlines()[-1])
        s, e = res["single"], res["ensemble"]
        print(f"5 x single-fold prediction: {s['seconds']:.2f} s/case, peak RSS {s['max_rss_mb']:.0f} MB")
        print(f"5-fold ensemble prediction: {e['seconds']:.2f} s/case, peak RSS {e['max_rss_mb']:.0f} MB")
        print(f"overhead ratio ensemble / (5 x single): {e['seconds'] / s['seconds']:.2f}")


if __name__ == "__main__":
    main()
