"""Two folds of one experiment training on the chosen GPU at once (`runs_per_gpu: 2`) beside
a foreign CUDA process: one session that three steps measure, nvml (nvml_check.py),
placement (here) and kill_resume (kill_resume.py)."""

from __future__ import annotations

import shutil
import statistics
import sys
import time
from pathlib import Path

from contracts.experiment import load_experiment

from .context import Ctx, StepError, events, killpg, proc_env, tail, write_yaml
from .kill_resume import kill_and_resume
from .nvml_check import container_fallback, nvml_readings
from .report import Step
from .session import PIPELINE_OFF, Supervised, folds_of, gpu_of

FOREIGN = ("import sys, time, torch\n"
           "x = torch.empty(64 * 2**20, dtype=torch.uint8, device='cuda')\n"
           "print('ready', flush=True)\n"
           "time.sleep(900)\n")


def two_runs_experiment(ctx: Ctx, folder: Path) -> tuple[Path, str]:
    if ctx.gpu:      # nnU-Net's default widths, the plan's patch and batch: a real fold's memory
        name, cfg = "3d_fullres", {"patch_size": "auto", "batch_size": "auto", "epochs": 100,
                                   "iterations_per_epoch": 50, "val_iterations": 2}
    else:
        name, cfg = "2d", {"patch_size": [32, 32], "batch_size": 2, "epochs": 100,
                           "iterations_per_epoch": 10, "val_iterations": 1, "base_features": 4,
                           "max_features": 8, "num_workers": 0}
    devices = {"gpus": [ctx.index], "runs_per_gpu": 2, "min_free_vram_gb": 1,
               "share_with_foreign": True, "cpu_slots": 2}
    if not ctx.gpu:
        devices["cpu_threads_per_run"] = 1
    exp = write_yaml(folder / "two-runs.yaml", {
        "experiment": "two-runs", "dataset": str(ctx.data), "results": str(folder / "results"),
        "folds": [0, 1], "configurations": {name: cfg}, "devices": devices,
        "watchdog": {"stall_timeout_s": 120, "max_restarts": 3, "backoff_initial_s": 1,
                     "backoff_max_s": 2, "grace_period_s": 10},
        "pipeline": PIPELINE_OFF, "previews": {"enabled": False}})
    return exp, name


def step_two_runs(ctx: Ctx) -> None:
    nv, pl, kr = (Step(n, ctx.folder) for n in ("nvml", "placement", "kill_resume"))
    folder = ctx.work / "two-runs"
    shutil.rmtree(folder, ignore_errors=True)
    exp, cfg = two_runs_experiment(ctx, folder)
    keys = [f"{cfg}/0", f"{cfg}/1"]
    layout = load_experiment(exp).layout
    dirs = {k: layout.fold_dir(cfg, int(k.split("/")[1])) for k in keys}
    foreign = None
    session = Supervised(ctx, exp, folder / "up.log")
    try:
        if ctx.gpu:
            foreign = start_foreign(ctx, folder)
            nv.fact("foreign process", f"pid {foreign}: python holding 64 MiB on GPU "
                    f"{ctx.index}, not started by foldwatch", "started by this script")
        t_up = time.monotonic()
        session.start()
        st, folds = both_training(ctx, session, keys, dirs)
        pl.figure("time to both folds training", round(time.monotonic() - t_up, 1), "s",
                  "from `foldwatch up --headless` to both folds running with an epoch done "
                  "(plan, preprocessing and the first epoch included)")
        pids = {k: folds[k]["pid"] for k in keys}
        placement(ctx, pl, st, folds, keys)
        pl.finish("ok" if ctx.gpu else "skipped", None if ctx.gpu else
                  f"{ctx.skip_why}; on the CPU the two runs took cpu slots "
                  + ", ".join(str(folds[k].get('device')) for k in keys))
        if ctx.gpu:
            last = nvml_readings(ctx, nv, session, keys, pids, foreign)
            container_fallback(ctx, nv, last, folds, keys, pids, foreign)
            nv.finish()
        else:
            nv.fact("console's GPU line", (st.get("nvml_message") or "-"),
                    "foldwatch status --json: nvml_message")
            nv.finish("skipped", ctx.skip_why)
        if not ctx.gpu:
            # From here on the dry run needs only the fold it kills (on the CPU the other one
            # would take a core from every step beside it); on a GPU the other keeps its half
            # of the GPU while the killed one restarts
            session.stop_run(keys[0])
        kill_and_resume(ctx, kr, session, keys[1], folds[keys[1]])
    except StepError as e:
        for s in (nv, pl, kr):
            if s.running:
                s.finish("failed", str(e))
    finally:
        session.end()
        if foreign is not None:
            killpg(foreign)


def start_foreign(ctx: Ctx, folder: Path) -> int:
    """A CUDA process foldwatch did not start, holding memory on the chosen GPU; its pid."""
    env = dict(ctx.env, CUDA_VISIBLE_DEVICES=str(ctx.index))
    log = folder / "foreign.log"
    folder.mkdir(parents=True, exist_ok=True)
    proc = ctx.spawn([sys.executable, "-c", FOREIGN, str(folder)], log, env)

    def ready() -> bool:
        if proc.poll() is not None:
            raise StepError("the foreign CUDA process exited: "
                            + tail(log.read_text(errors="replace")))
        return "ready" in log.read_text(errors="replace")
    try:
        ctx.wait("the foreign CUDA process ready", ready, 40, every=0.2)
    except StepError:
        killpg(proc.pid)
        raise
    return proc.pid


def both_training(ctx: Ctx, session: Supervised, keys: list[str], dirs: dict[str, Path]
                  ) -> tuple[dict, dict]:
    """Both folds running with an epoch done (their peak memory known) and, on a GPU, both in
    NVML's process list. Their metrics files are watched until each has an epoch, then
    `foldwatch status --json` (a process start each) confirms."""
    seen: dict[str, dict] = {}

    def ready() -> tuple[dict, dict] | None:
        session.check_running()
        if not all(events(dirs[k], "epoch") for k in keys):
            return None
        st = session.status()
        seen.update(folds_of(st))
        ok = all(seen.get(k, {}).get("state") == "running" and seen[k].get("pid")
                 and (seen[k].get("epoch") or 0) >= 1 for k in keys)
        if ok and ctx.gpu:
            g = gpu_of(st, ctx.index)
            ok = g is not None and {seen[k]["pid"] for k in keys} <= {
                p["pid"] for p in g["processes"]}
        return (st, dict(seen)) if ok else None
    return ctx.wait("the two folds both training with an epoch done", ready,
                    90 if ctx.gpu else 60, every=0.5, reserve=40,
                    detail=lambda: ", ".join(f"{k} {seen.get(k, {}).get('state')}" for k in keys))


def placement(ctx: Ctx, pl: Step, st: dict, folds: dict, keys: list[str]) -> None:
    devices = {k: folds[k].get("device") for k in keys}
    pl.fact("devices", ", ".join(f"{k} on {d}" for k, d in devices.items()),
            "foldwatch status --json: runs[].device, one snapshot")
    for k in keys:
        env = proc_env(folds[k]["pid"]) or {}
        cvd = env.get("CUDA_VISIBLE_DEVICES", "(unset)")
        pl.fact(f"{k} CUDA_VISIBLE_DEVICES", cvd, f"/proc/{folds[k]['pid']}/environ")
        start = events(folds[k].get("run_dir"), "start")
        if start:
            pl.fact(f"{k} trainer device", start[-1].get("device"), "metrics.jsonl start.device")
        if ctx.gpu:
            pl.check(f"{k}: CUDA_VISIBLE_DEVICES={ctx.index}, CUDA_DEVICE_ORDER=PCI_BUS_ID",
                     cvd == str(ctx.index) and env.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID",
                     f"CUDA_VISIBLE_DEVICES={cvd}, "
                     f"CUDA_DEVICE_ORDER={env.get('CUDA_DEVICE_ORDER')}")
    if ctx.gpu:
        pl.check(f"runs_per_gpu: 2: both folds on gpu{ctx.index} at once",
                 all(d == f"gpu{ctx.index}" for d in devices.values()),
                 ", ".join(f"{k}: {d}" for k, d in devices.items()))
        g = gpu_of(st, ctx.index) or {"processes": []}
        on_gpu = {p["pid"] for p in g["processes"]}
        pl.check(f"NVML lists both trainers on GPU {ctx.index}",
                 {folds[k]["pid"] for k in keys} <= on_gpu, f"NVML pids {sorted(on_gpu)}")
    for k in keys:
        eps = events(folds[k].get("run_dir"), "epoch")
        if any(e.get("epoch_s") for e in eps) and folds[k].get("samples_per_s"):
            pl.figure(f"{k} samples/s while sharing", folds[k]["samples_per_s"], "samples/s",
                      "foldwatch status --json: runs[].samples_per_s (batch x iterations / "
                      "epoch time, validation included), two folds on one device")
        waits = [e["data_wait_frac"] for e in eps if e.get("data_wait_frac") is not None]
        if waits:
            pl.figure(f"{k} data-wait fraction while sharing", round(statistics.median(waits), 3),
                      "fraction",
                      "metrics.jsonl epoch.data_wait_frac, median over the epochs so far")
