"""The trainer step: samples/s of the real data pipeline against a bare loop on one batch
(bench/trainer_throughput.py, AMP on, `num_workers: auto`), the data-wait fraction, and the
CUDA allocator's peak against the plan's estimate and `probe-memory`'s prediction."""

from __future__ import annotations

import json
import shutil
import sys

from .context import ROOT, Ctx, json_out, trainer, write_yaml
from .report import Step


def step_trainer(ctx: Ctx) -> None:
    s = Step("trainer", ctx.folder)
    folder = ctx.work / "trainer"
    shutil.rmtree(folder, ignore_errors=True)
    if ctx.gpu:      # the plan's patch and batch (nnU-Net's rules, 8 GB target), default widths
        cfgs = {c: {"patch_size": "auto", "batch_size": "auto"} for c in ("2d", "3d_fullres")}
        iterations, chunk = 100, 5
    else:            # the dry run proves the code once, on the configuration with more to do
        cfgs = {"3d_fullres": {"patch_size": [16, 32, 32], "batch_size": 2, "base_features": 4,
                               "max_features": 8, "num_workers": "auto"}}
        iterations, chunk = 2, 1
    exp = write_yaml(folder / "trainer.yaml", {
        "experiment": "trainer", "dataset": str(ctx.data), "results": str(folder / "results"),
        "folds": [0], "configurations": cfgs, "previews": {"enabled": False}})
    ctx.run(trainer("plan", "--experiment", exp), timeout=90)
    for c in cfgs:
        ctx.run(trainer("preprocess", "--experiment", exp, "--configuration", c), timeout=90)
    for c in cfgs:
        out = folder / f"throughput-{c}.json"
        ctx.run([sys.executable, str(ROOT / "bench" / "trainer_throughput.py"), "--experiment",
                 str(exp), "--configuration", c, "--iterations", str(iterations), "--chunk",
                 str(chunk), "--json", str(out)], timeout=150)
        d = json.loads(out.read_text())
        how = (f"bench/trainer_throughput.py: {d['iterations']} steps of each, alternating chunks "
               f"of {d['chunk']}, patch {d['patch_size']}, batch {d['batch']}, features "
               f"{d['features'][0]}-{d['features'][1]}, AMP {'on' if d['amp'] else 'off'}, "
               f"{d['workers']} data workers (num_workers: {d['num_workers']}), {d['device']}")
        s.fact(f"{c} set-up", how, "bench/trainer_throughput.py --json")
        s.figure(f"{c}: pipeline", d["pipeline_samples_per_s"], "samples/s",
                 "the real data path (sampling, oversampling, nnU-Net's augmentations, DataLoader "
                 "workers) feeding the fold trainer's step")
        s.figure(f"{c}: bare loop", d["bare_samples_per_s"], "samples/s",
                 "the same step on one batch already in memory, same run")
        s.figure(f"{c}: pipeline / bare", round(d["ratio"], 3), "ratio",
                 "the two figures above (target >= 0.9, docs/training.md)")
        s.figure(f"{c}: data-wait fraction", round(d["data_wait_frac"], 3), "fraction",
                 "time waiting for the next batch / pipeline time (target < 0.05)")
        if ctx.gpu:
            s.check(f"{c}: AMP on, on CUDA", d["amp"] and d["device"].startswith("cuda"),
                    f"amp {d['amp']}, device {d['device']}")
            s.fact(f"{c}: targets (ratio >= 0.9, data wait < 5 %)",
                   "met" if d["ratio"] >= 0.9 and d["data_wait_frac"] < 0.05 else "not met",
                   "docs/training.md, Training speed")
        memory(ctx, s, exp, c, d)
    if not ctx.gpu:
        s.note(f"Dry run ({ctx.skip_why}): the pipeline, the bare loop and probe-memory ran on "
               "the CPU for 3d_fullres (2d runs the same code) with tiny sizes; the figures "
               "only prove the step works. Peak GPU memory is left out.")
    s.finish()


def memory(ctx: Ctx, s: Step, exp, c: str, d: dict) -> None:
    """The bench's measured peak against the plan's estimate and probe-memory's prediction."""
    batch = d["batch"]
    r = ctx.run(trainer("probe-memory", "--experiment", exp, "--configuration", c,
                        "--batch-sizes", batch, "--amp", "on", "--checkpointing", "off",
                        "--widths", "1", "--steps", "3" if ctx.gpu else "2", "--json"),
                timeout=120)
    probe = json_out(r.stdout)["candidates"][0]
    vram = d.get("vram_plan") or {}
    plan_gb = None
    if vram.get("estimate") and vram.get("reference"):
        plan_gb = (vram["target_gb"] * batch * vram["estimate"]
                   / (vram["reference"] * vram["reference_batch"]))
        s.figure(f"{c}: the plan's estimate", round(plan_gb, 3), "GB",
                 f"nnU-Net's static estimate: vram_target_gb {vram['target_gb']} x batch {batch} "
                 f"x {vram['estimate']} feature-map elements / (reference {vram['reference']:.3g} "
                 f"x {vram['reference_batch']}) (plans/{c}.json extra.vram)")
    if "peak_mb" not in probe:
        s.check(f"{c}: probe-memory answered", False, probe.get("error", "no peak"))
        return
    what = "peak reserved (CUDA allocator)" if ctx.gpu else "peak RSS of the process"
    s.figure(f"{c}: probe-memory's prediction", round(probe["peak_mb"]), "MiB",
             f"python -m trainer probe-memory --batch-sizes {batch} --amp on: {what}")
    if not ctx.gpu:
        return
    s.figure(f"{c}: measured peak reserved", round(d["peak_reserved_mb"]), "MiB",
             "torch.cuda.max_memory_reserved over the timed steps of the bench above")
    s.figure(f"{c}: measured peak allocated", round(d["peak_allocated_mb"]), "MiB",
             "torch.cuda.max_memory_allocated over the same steps")
    s.figure(f"{c}: measured / probe-memory", round(d["peak_reserved_mb"] / probe["peak_mb"], 3),
             "ratio", "peak reserved of the bench / probe-memory's, same run")
    if plan_gb:
        s.figure(f"{c}: measured / plan's estimate",
                 round(d["peak_reserved_mb"] / 1024 / plan_gb, 3), "ratio",
                 "peak reserved (GiB) / the plan's estimate (GB, nnU-Net's unit), same run")
