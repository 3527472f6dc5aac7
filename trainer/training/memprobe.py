"""One memory-probe candidate, run in its own process: a few real training steps, peak memory.

`python -m trainer.training.memprobe '<json>'` prints one JSON line. A fresh process per
candidate gives each its own peak (CUDA allocator statistics, or the process' peak RSS on a
CPU) and keeps an out-of-memory candidate from taking the probe down with it.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024      # KiB on Linux


def probe(spec: dict) -> dict:
    import numpy as np
    import torch

    from contracts.experiment import load_experiment
    from trainer.planning.plans import Plan
    from trainer.planning.preprocessed import list_cases
    from trainer.training.loop import FoldTrainer

    exp = load_experiment(spec["experiment"])
    name = spec["configuration"]
    plan = Plan.load(exp.layout.plan(name))
    width = float(spec["width"])
    plan = replace(plan, filters=[max(1, int(round(f * width))) for f in plan.filters])
    cfg = exp.configurations[name].model_copy(update={
        "amp": bool(spec["amp"]), "grad_checkpointing": bool(spec["grad_checkpointing"]),
        "num_workers": 0})
    device = torch.device(spec["device"])
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    folder = exp.layout.preprocessed(name)
    cases = list_cases(folder) if folder.is_dir() else []
    previous = None
    if plan.previous_stage and cases:
        prev = folder / "previous_stage"
        previous = prev if all((prev / f"{c}_prev.npy").exists() for c in cases) else None
    real = bool(cases) and (not plan.previous_stage or previous is not None)
    baseline = _rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    batch = int(spec["batch_size"])
    trainer = FoldTrainer(plan=plan, cfg=cfg, folder=folder, train_cases=cases or ["-"],
                          val_cases=cases or ["-"], fold_dir=Path(spec["scratch"]), log=None,
                          device=device, batch_size=batch, grad_accumulation=1,
                          previous=previous)
    trainer.train_data.epoch = 0
    rng = np.random.default_rng(0)
    times = []
    for i in range(int(spec["steps"])):
        if real:          # the real loader: patches, oversampling, augmentation
            data = trainer.train_data[i]
        else:             # no preprocessed cases yet: random patches of the plan's shape
            shape = (batch, plan.in_channels, *plan.patch_size)
            data = {"image": torch.from_numpy(rng.standard_normal(shape, dtype=np.float32)),
                    "label": torch.from_numpy(rng.integers(0, plan.num_classes,
                                                           (batch, *plan.patch_size)))}
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        trainer.step(data)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    out = {"data": "preprocessed cases" if real else "random patches",
           "step_s": float(np.median(times[1:] if len(times) > 1 else times)),
           "rss_peak_mb": _rss_mb(), "rss_baseline_mb": baseline,
           "parameters": sum(p.numel() for p in trainer.net.parameters())}
    if device.type == "cuda":
        out["peak_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
        out["allocated_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        out["peak_mb"] = out["rss_peak_mb"]
    return out


def main() -> int:
    spec = json.loads(sys.argv[1])
    try:
        result = probe(spec)
    except Exception as e:   # reported per candidate; out of memory is an answer, not a crash
        import torch
        oom = isinstance(e, (torch.cuda.OutOfMemoryError, MemoryError)) or \
            "out of memory" in str(e).lower()
        result = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                  "oom": oom}
    print("MEMPROBE " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
