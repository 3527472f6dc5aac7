"""Trainer throughput on the demo: the real data pipeline vs a bare loop (the upper bound).

Builds the demo (make-demo-data, plan, preprocess) in a temp folder, then for the demo
configuration times `iterations` training steps fed by the DataLoader workers (sampling,
oversampling, augmentation) and as many steps over one pre-made batch with no data
pipeline at all, in alternating chunks so both see the same load. Prints samples/s of
both, the data-wait fraction and the ratio.

    python bench/trainer_throughput.py [--configuration 3d_fullres] [--iterations 30]
    python bench/trainer_throughput.py --experiment DIR/demo-cascade.yaml \
        --configuration 3d_cascade_fullres     # an experiment already run (lowres predicted)

`--json FILE` also writes the figures (and, on CUDA, the allocator's peak memory over the
timed steps and the plan's memory estimate) for the GPU check (bench/gpu_check/throughput.py).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _trainer(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "trainer", *args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configuration", default="3d_fullres")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--chunk", type=int, default=5,
                    help="steps per alternating pipeline/bare chunk (default 5)")
    ap.add_argument("--workers", default=None,
                    help="DataLoader workers (default: the configuration's num_workers, "
                         "resolved as the trainer does)")
    ap.add_argument("--workdir", help="reuse a demo built here (default: a temp folder)")
    ap.add_argument("--experiment", type=Path,
                    help="an experiment already planned and preprocessed (the cascade also "
                         "needs its 3d_lowres folds' predictions)")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    a = ap.parse_args()
    os.environ.setdefault("FOLDWATCH_CPU_THREADS", "2")
    work = Path(a.workdir or tempfile.mkdtemp(prefix="fw-bench-"))
    exp_path = a.experiment.resolve() if a.experiment else work / "demo.yaml"
    if not exp_path.exists():
        _trainer("make-demo-data", str(work / "data" / "Dataset900_Demo"))
        text = (ROOT / "configs/demo.yaml").read_text()
        exp_path.write_text(text.replace("../data/", "data/").replace("../results", "results"))
        _trainer("plan", "--experiment", str(exp_path))
        _trainer("preprocess", "--experiment", str(exp_path), "--configuration", a.configuration)

    import torch

    from contracts.experiment import load_experiment
    from contracts.jsonio import read_json
    from trainer.runtime.device import data_workers, pick_device
    from trainer.training.loader import epoch_loader
    from trainer.planning.plans import Plan
    from trainer.runtime.runlog import RunLog
    from trainer.training.loop import FoldTrainer

    exp = load_experiment(exp_path)
    cfg = exp.configurations[a.configuration]
    layout = exp.layout
    plan = Plan.load(layout.plan(a.configuration))
    split = read_json(layout.splits)[0]
    dev = pick_device()
    run_dir = work / "bench-run"
    folder = layout.preprocessed(a.configuration)
    previous = None
    if plan.previous_stage:
        from trainer.inference.cascade import prepare_previous_stage
        previous = prepare_previous_stage(exp, plan, folder, split["train"] + split["val"])
    batch = plan.batch_size if cfg.batch_size == "auto" else cfg.batch_size
    with RunLog(run_dir, configuration=a.configuration, fold=0) as log:
        t = FoldTrainer(plan=plan, cfg=cfg, folder=folder,
                        train_cases=split["train"], val_cases=split["val"], fold_dir=run_dir,
                        log=log, device=dev, batch_size=batch,
                        grad_accumulation=cfg.grad_accumulation, previous=previous)
        n = a.iterations
        batch0 = t.train_data[0]
        t.step(batch0)  # warm-up: allocator, kernels
        # Every training case opened once (its metadata read, its arrays mapped), as after the
        # first iterations of a run: the steady state an epoch of 250 iterations sees.
        for case in t.train_data.cases:
            t.train_data._case(case)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
        # Alternate chunks of pipeline steps (workers make batches while the main process
        # trains) and bare steps (the same network on one batch already in memory), so that
        # both see the same machine load: on a shared machine a sequential comparison
        # measures the other users, not the pipeline.
        chunk = max(1, a.chunk)
        wait = pipeline_s = bare_s = 0.0
        workers = data_workers(a.workers if a.workers is not None else cfg.num_workers, dev)
        it = iter(epoch_loader(t.train_data, 1, 0, n, workers))
        done = 0
        while done < n:
            m = min(chunk, n - done)
            start = time.perf_counter()
            for _ in range(m):
                t0 = time.perf_counter()
                batch = next(it)
                wait += time.perf_counter() - t0
                t.step(batch)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            pipeline_s += time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(m):
                t.step(batch0)
            if dev.type == "cuda":          # each chunk's time is its GPU work, not its launches
                torch.cuda.synchronize(dev)
            bare_s += time.perf_counter() - start
            done += m
        del it
    samples = n * t.batch
    sps, bare = samples / pipeline_s, samples / bare_s
    print(f"configuration {a.configuration}: patch {plan.patch_size}, batch {t.batch}, "
          f"{workers} workers (num_workers: {a.workers or cfg.num_workers}), {torch.get_num_threads()} threads, device {dev}")
    print(f"pipeline   {sps:8.2f} samples/s   data-wait fraction {wait / pipeline_s:.3f}")
    print(f"bare loop  {bare:8.2f} samples/s   (no data pipeline: upper bound)")
    print(f"ratio pipeline/bare = {sps / bare:.3f}")
    if a.json:
        out = {"configuration": a.configuration, "patch_size": plan.patch_size, "batch": t.batch,
               "iterations": n, "chunk": chunk, "workers": workers,
               "num_workers": a.workers or cfg.num_workers, "threads": torch.get_num_threads(),
               "device": str(dev), "amp": bool(t.amp), "pipeline_samples_per_s": sps,
               "bare_samples_per_s": bare, "ratio": sps / bare,
               "data_wait_frac": wait / pipeline_s, "vram_plan": plan.extra.get("vram"),
               "features": [cfg.base_features, cfg.max_features]}
        if dev.type == "cuda":
            out.update(gpu=torch.cuda.get_device_name(dev),
                       peak_reserved_mb=torch.cuda.max_memory_reserved(dev) / 2**20,
                       peak_allocated_mb=torch.cuda.max_memory_allocated(dev) / 2**20)
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
