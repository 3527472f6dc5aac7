"""`python -m trainer probe-memory`: which batch size / AMP / checkpointing / width fits a budget.

Each candidate runs a few real training steps (the fold trainer's own step, on real patches
when the configuration is preprocessed) in a fresh process; the table gives its peak memory
(CUDA: the allocator's peak reserved memory; CPU: the process' peak RSS, torch included) and
its time per step, and marks what fits `--budget-gb`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from contracts.errors import ConfigError


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers separated by commas") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive numbers")
    return values


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers separated by commas") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive numbers")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, help="experiment YAML file")
    p.add_argument("--configuration", required=True, help="e.g. 3d_fullres (must be planned)")
    p.add_argument("--budget-gb", type=float, default=None,
                   help="memory budget (default: the GPU's memory, or the machine's RAM)")
    p.add_argument("--batch-sizes", type=_ints, default=None,
                   help="comma-separated (default: half, the planned, double)")
    p.add_argument("--widths", type=_floats, default=[1.0, 0.5],
                   help="channel-width factors (default: 1,0.5)")
    p.add_argument("--checkpointing", choices=["off", "on", "both"], default="both")
    p.add_argument("--amp", choices=["off", "on", "both"], default="both",
                   help="mixed precision (CUDA only; off on a CPU)")
    p.add_argument("--steps", type=int, default=3, help="training steps per candidate (>= 2)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def _choices(flag: str, cuda: bool) -> list[bool]:
    if flag == "both":
        return [False, True] if cuda else [False]
    return [flag == "on"]


def candidates(args, batch: int, cuda: bool) -> list[dict]:
    """The full grid is large; by default vary one thing at a time around the plan."""
    sizes = args.batch_sizes or sorted({max(1, batch // 2), batch, batch * 2})
    amps = _choices(args.amp, cuda)
    ckpts = [False, True] if args.checkpointing == "both" else [args.checkpointing == "on"]
    out = []
    for bs, amp, ck, w in itertools.product(sizes, amps, ckpts, args.widths):
        out.append({"batch_size": bs, "amp": amp, "grad_checkpointing": ck, "width": w})
    return out


def _budget_gb(args, cuda: bool) -> float:
    if args.budget_gb is not None:
        return args.budget_gb
    if cuda:
        import torch
        return torch.cuda.get_device_properties(0).total_memory / 2**30
    import psutil
    return psutil.virtual_memory().total / 2**30


def run_candidate(spec: dict, timeout: float) -> dict:
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "trainer.training.memprobe", json.dumps(spec)]
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no answer within {timeout:.0f} s"}
    for line in r.stdout.splitlines():
        if line.startswith("MEMPROBE "):
            return json.loads(line[len("MEMPROBE "):])
    killed = r.returncode < 0
    return {"error": ("killed by signal %d (out of memory?)" % -r.returncode) if killed
            else (r.stderr.strip().splitlines() or ["no output"])[-1], "oom": killed}


def run(args: argparse.Namespace) -> int:
    from contracts.experiment import load_experiment
    from trainer.planning.plans import Plan

    exp = load_experiment(args.experiment)
    if args.configuration not in exp.configurations:
        raise ConfigError(f"{args.experiment}: configuration {args.configuration!r} is not in "
                          f"configurations: ({', '.join(exp.configurations)})")
    if args.steps < 2:
        raise ConfigError("--steps: expected at least 2 (the first step is a warm-up)")
    plan = Plan.load(exp.layout.plan(args.configuration))
    import torch
    cuda = torch.cuda.is_available() if args.device == "auto" else args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible (CUDA_VISIBLE_DEVICES?)")
    budget = _budget_gb(args, cuda)
    cfg = exp.configurations[args.configuration]
    batch = plan.batch_size if cfg.batch_size == "auto" else cfg.batch_size
    rows = []
    with tempfile.TemporaryDirectory(prefix="probe-memory-") as scratch:
        for cand in candidates(args, batch, cuda):
            spec = {**cand, "experiment": str(exp.source), "configuration": args.configuration,
                    "device": "cuda" if cuda else "cpu", "steps": args.steps,
                    "scratch": scratch, "threads": os.environ.get("FOLDWATCH_CPU_THREADS")}
            res = run_candidate(spec, timeout=600)
            res.update(cand)
            res["fits"] = "peak_mb" in res and res["peak_mb"] <= budget * 1024
            rows.append(res)
            if not args.json:
                print(_row(res), flush=True) if len(rows) > 1 else print(
                    _header(plan, cuda, budget) + "\n" + _row(res), flush=True)
    best = _best(rows)
    if args.json:
        print(json.dumps({"configuration": args.configuration, "device": "cuda" if cuda else "cpu",
                          "budget_gb": budget, "patch_size": plan.patch_size,
                          "candidates": rows, "best": best}, indent=2))
    else:
        print("\n" + (f"best fit: {_describe(best)}" if best else
                      f"nothing fits {budget:.1f} GB: try smaller --batch-sizes or --widths, "
                      "or a smaller patch_size / vram_target_gb in the experiment file"))
    return 0


def _best(rows: list[dict]) -> dict | None:
    """Full width and no recomputation first (they cost accuracy and time), then the batch."""
    fits = [r for r in rows if r.get("fits")]
    if not fits:
        return None
    return max(fits, key=lambda r: (r["width"], not r["grad_checkpointing"], r["batch_size"],
                                    r["amp"]))


def _describe(r: dict) -> str:
    return (f"batch {r['batch_size']}, amp {'on' if r['amp'] else 'off'}, gradient checkpointing "
            f"{'on' if r['grad_checkpointing'] else 'off'}, width x{r['width']:g} "
            f"({r['peak_mb']:.0f} MB, {r['step_s']:.2f} s/step)")


def _header(plan, cuda: bool, budget: float) -> str:
    what = "peak reserved MB" if cuda else "peak RSS MB (+steps)"
    return (f"{plan.configuration}: patch {plan.patch_size}, budget {budget:.1f} GB "
            f"({'CUDA' if cuda else 'CPU: process RSS, torch included'})\n"
            f"{'batch':>5} {'amp':>4} {'ckpt':>5} {'width':>6} {what:>22} {'s/step':>8}  fits")


def _row(r: dict) -> str:
    head = (f"{r['batch_size']:>5} {('on' if r['amp'] else 'off'):>4} "
            f"{('on' if r['grad_checkpointing'] else 'off'):>5} {r['width']:>6g}")
    if "error" in r:
        return f"{head} {'OOM' if r.get('oom') else 'failed':>22} {'':>8}  no   {r['error']}"
    # on a CPU, also what the steps added to the process after its imports
    mem = (f"{r['peak_mb']:.0f}" if "allocated_peak_mb" in r else
           f"{r['peak_mb']:.0f} (+{r['peak_mb'] - r['rss_baseline_mb']:.0f})")
    return f"{head} {mem:>22} {r['step_s']:>8.3f}  {'yes' if r['fits'] else 'no'}"
