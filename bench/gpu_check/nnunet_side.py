"""The nnunet step: nnU-Net v2 (`trainer: nnunetv2`) and foldwatch's trainer on the same
dataset, patch, batch and widths, one fold each under foldwatch's supervision: iterations/s,
samples/s, the Dice each reaches in the same wall time and after the same iterations."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

from .context import ROOT, Ctx, StepError, read_jsonl, write_yaml
from .report import Step
from .session import PIPELINE_OFF, Supervised, folds_of


def _nnunet_tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def fold_figures(exp_results: Path, key: str, run_dir: str) -> dict:
    """A fold's epochs, timed from its launch (the console's `launch` decision, before the
    trainer's imports and start-up: both sides are timed the same way)."""
    launch = next((e["t"] for e in read_jsonl(exp_results / "console" / "events.jsonl")
                   if e.get("run") == key and e.get("action") == "launch"), None)
    epochs = [e for e in read_jsonl(Path(run_dir) / "metrics.jsonl") if e.get("event") == "epoch"]
    if launch is None or not epochs:
        raise StepError(f"{exp_results.name}: no launch decision or no epoch event for {key}")
    return {"t0": launch, "epochs": epochs,
            "epoch_s": statistics.median(e["epoch_s"] for e in epochs if e.get("epoch_s")),
            "first": epochs[0]["t"] - launch, "wall": epochs[-1]["t"] - launch}


def step_nnunet(ctx: Ctx) -> None:
    s = Step("nnunet", ctx.folder)
    if importlib.util.find_spec("nnunetv2") is None or not _nnunet_tool(
            "nnUNetv2_plan_and_preprocess"):
        s.finish("skipped", "nnunetv2 is not installed here (its wheels: `make gpu-wheels`; "
                 "or `pip install 'foldwatch[nnunet]'`)")
        return
    folder = ctx.work / "nnunet"
    shutil.rmtree(folder, ignore_errors=True)
    if ctx.gpu:
        raw, dataset, cfg = ctx.work / "data", "Dataset900_Demo", "3d_fullres"
        epochs, its, val = ctx.nnunet_epochs, ctx.nnunet_iterations, 5
        workers = max(1, min(8, len(os.sched_getaffinity(0)) // 2))   # foldwatch's `auto`
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from nnunet_fixture import DATASET, make_tiny_dataset
        raw, dataset, cfg = folder / "raw", DATASET, "2d"
        make_tiny_dataset(raw)
        epochs, its, val, workers = 2, 2, 1, 0      # 0: batches made in the trainer's process
    roots = {"raw": str(raw), "preprocessed": str(folder / "pre"), "results": str(folder / "nn")}
    env = dict(ctx.env, nnUNet_raw=roots["raw"], nnUNet_preprocessed=roots["preprocessed"],
               nnUNet_results=roots["results"], nnUNet_compile="f")
    devices = {"gpus": [ctx.index], "runs_per_gpu": 1, "cpu_slots": 1}
    nn_exp = write_yaml(folder / "nnunet-side.yaml", {
        "experiment": "nnunet-side", "trainer": "nnunetv2", "results": str(folder / "runs"),
        "folds": [0], "configurations": {cfg: {}},
        "nnunet": {"dataset": int(dataset[7:10]), **roots, "plan": True, "npz": False,
                   "epochs": epochs, "iterations_per_epoch": its, "val_iterations": val,
                   "workers": workers, "processes": max(1, workers),
                   "verify_dataset_integrity": False},
        "devices": devices, "pipeline": PIPELINE_OFF,
        "watchdog": {"stall_timeout_s": 300, "max_restarts": 1}})
    with Supervised(ctx, nn_exp, ctx.folder / "nnunet-side.log", env) as side:
        wall = side.run(timeout=ctx.left() * 0.6)
        nn_run = folds_of(side.status())[f"{cfg}/0"]
    s.figure("nnU-Net side, whole run", round(wall, 1), "s",
             "foldwatch up --headless: nnUNetv2_plan_and_preprocess + one fold")
    plans = json.loads(next((folder / "pre").glob("Dataset*/nnUNetPlans.json")).read_text())
    pc = plans["configurations"][cfg]
    patch, batch = pc["patch_size"], pc["batch_size"]
    feats = pc.get("architecture", {}).get("arch_kwargs", {}).get("features_per_stage") or [32, 320]
    s.fact("patch and batch (both sides)", f"patch {patch}, batch {batch}, features "
           f"{feats[0]}-{max(feats)}, {epochs} epochs x {its} iterations, {val} validation "
           f"iterations per epoch, {workers} data workers", "nnU-Net's nnUNetPlans.json, "
           "given to foldwatch's trainer as patch_size / batch_size / base_features / max_features")
    fw_exp = write_yaml(folder / "foldwatch-side.yaml", {
        "experiment": "foldwatch-side", "dataset": str(raw / dataset),
        "results": str(folder / "runs"), "folds": [0],
        "configurations": {cfg: {"patch_size": patch, "batch_size": batch, "epochs": epochs,
                                 "iterations_per_epoch": its, "val_iterations": val,
                                 "learning_rate": 0.01, "base_features": feats[0],
                                 "max_features": max(feats),
                                 "num_workers": "auto" if ctx.gpu else 0}},
        "devices": devices, "pipeline": PIPELINE_OFF, "previews": {"enabled": False}})
    with Supervised(ctx, fw_exp, ctx.folder / "foldwatch-side.log") as side:
        wall = side.run(timeout=ctx.left() - 10)
        fw_run = folds_of(side.status())[f"{cfg}/0"]
    s.figure("foldwatch side, whole run", round(wall, 1), "s",
             "foldwatch up --headless: plan, preprocess + one fold")
    fw_plan = json.loads((folder / "runs" / "foldwatch-side" / "plans" / f"{cfg}.json").read_text())
    s.check("equal patch and batch",
            fw_plan["patch_size"] == patch and fw_plan["batch_size"] == batch,
            f"foldwatch's plan: patch {fw_plan['patch_size']}, batch {fw_plan['batch_size']}")
    runs = folder / "runs"
    sides = {"nnU-Net": fold_figures(runs / "nnunet-side", f"{cfg}/0", nn_run["run_dir"]),
             "foldwatch": fold_figures(runs / "foldwatch-side", f"{cfg}/0", fw_run["run_dir"])}
    _speed(s, sides, its, val, batch)
    _dice(s, sides, folder, cfg, fw_run, epochs * its)
    s.note("nnU-Net runs with nnUNet_compile=f (eager, as foldwatch's trainer): torch.compile's "
           "minutes of compilation would not pay off in a run this short.")
    if not ctx.gpu:
        s.note(f"Dry run ({ctx.skip_why}): both sides ran on the CPU on the tiny 2d dataset of "
               "tests/nnunet_fixture.py; the figures only prove the step works.")
    s.finish()


def _speed(s: Step, sides: dict, its: int, val: int, batch: int) -> None:
    for name, f in sides.items():
        s.figure(f"{name}: iterations/s", its / f["epoch_s"], "iterations/s",
                 f"{its} training iterations / the median epoch time ({f['epoch_s']:.2f} s, the "
                 f"trainer's own, {val} validation iterations included) over "
                 f"{len(f['epochs'])} epochs")
        s.figure(f"{name}: samples/s", its * batch / f["epoch_s"], "samples/s",
                 "iterations/s x batch")
        s.figure(f"{name}: launch to first epoch", round(f["first"], 1), "s",
                 "the console's launch of the fold (console/events.jsonl) to its first epoch "
                 "event (start-up, data workers and one epoch)")
        s.figure(f"{name}: launch to last epoch", round(f["wall"], 1), "s",
                 "the console's launch of the fold to its last epoch event")
    ratio = sides["nnU-Net"]["epoch_s"] / sides["foldwatch"]["epoch_s"]
    s.figure("foldwatch / nnU-Net iterations/s", round(ratio, 3), "ratio", "the two figures above")


def _dice(s: Step, sides: dict, folder: Path, cfg: str, fw_run: dict, iterations: int) -> None:
    w = min(f["wall"] for f in sides.values())
    for name, f in sides.items():
        reached = [e for e in f["epochs"] if e["t"] - f["t0"] <= w + 1e-6]
        ema = reached[-1].get("ema_dice") if reached else None
        s.figure(f"{name}: EMA pseudo-Dice {w:.0f} s after launch",
                 ema if ema is not None else "n/a (no epoch yet)", "Dice",
                 f"the last epoch event within {w:.0f} s of the fold's launch (the faster side's "
                 f"whole training); epochs done by then: {len(reached)}")
    for name, path in (("nnU-Net", next((folder / "nn").glob(
            f"Dataset*/nnUNetTrainer__nnUNetPlans__{cfg}/fold_0/validation/summary.json"), None)),
            ("foldwatch", Path(fw_run["run_dir"]) / "validation" / "summary.json")):
        if path is None or not path.exists():
            s.check(f"{name}: validation summary written", False, str(path))
            continue
        fg = (json.loads(path.read_text()).get("foreground_mean") or {}).get("Dice")
        s.figure(f"{name}: validation Dice after {iterations} iterations", fg, "Dice",
                 "foreground mean over fold 0's whole validation cases (summary.json, nnU-Net's "
                 "metrics), after the same number of iterations")
