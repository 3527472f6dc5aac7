"""The nvml step: the console's GPU sampler, read through `foldwatch status --json` while
two of our runs and a foreign process hold the GPU, against nvidia-smi's own figures; and
the console's attribution as it works inside a container (the pid match impossible)."""

from __future__ import annotations

import statistics
import time

from .context import CONSOLE_GPU_OWNERS, Ctx, StepError, console_module, num, smi
from .report import Step
from .session import Supervised, gpu_of

READINGS, APART_S = 5, 1.5


def nvml_readings(ctx: Ctx, nv: Step, session: Supervised, keys: list[str], pids: dict,
                  foreign: int) -> dict:
    """READINGS readings of `foldwatch status --json`, each followed at once by nvidia-smi's;
    the last reading's GPU."""
    idx = ctx.index
    rows, last = [], {}
    for _ in range(READINGS):
        st = session.status()
        gpu_rows = smi("--query-gpu=index,utilization.gpu,memory.used,memory.total")
        apps = smi("--query-compute-apps=pid,used_memory,gpu_bus_id")
        g = gpu_of(st, idx)
        if g is None:
            raise StepError(f"foldwatch status --json shows no GPU {idx}: {st.get('nvml_message')}")
        last = g
        procs = {p["pid"]: p for p in g["processes"]}
        srow = next((r for r in gpu_rows or [] if r[0] == str(idx)), None)
        smi_procs = {int(r[0]): num(r[1]) for r in apps or [] if r and r[0].isdigit()}
        rows.append({
            "ours": all(procs.get(pids[k], {}).get("run_key") == k for k in keys),
            "foreign": foreign in procs and procs[foreign].get("run_key") is None,
            "util": g.get("util_pct"), "smi_util": num(srow[1]) if srow else None,
            "mem": g.get("mem_used_mb"), "smi_mem": num(srow[2]) if srow else None,
            "proc_diff": [abs(procs[p]["used_mb"] - smi_procs[p]) for p in procs
                          if p in smi_procs and procs[p].get("used_mb") is not None
                          and smi_procs[p] is not None],
            "run_mem": {k: procs.get(pids[k], {}).get("used_mb") for k in keys},
            "foreign_mem": procs.get(foreign, {}).get("used_mb")})
        time.sleep(APART_S)
    how = ("foldwatch status --json (the console's NvmlSampler, read from the supervisor's "
           f"snapshot), {len(rows)} readings {APART_S} s apart")
    _attribution(nv, rows, keys, how)
    _utilisation(nv, rows, how)
    _memory(nv, rows, how)
    return last


def _attribution(nv: Step, rows: list[dict], keys: list[str], how: str) -> None:
    n = len(rows)
    nv.figure("readings with both runs attributed by pid", sum(r["ours"] for r in rows),
              f"of {n} readings", how + ": gpus[].processes[].run_key == the run")
    nv.figure("readings with the foreign process shown as foreign", sum(r["foreign"] for r in rows),
              f"of {n} readings", how + ": run_key null for the foreign pid")
    nv.check("both runs attributed by pid in every reading", all(r["ours"] for r in rows))
    nv.check("the foreign process foreign in every reading", all(r["foreign"] for r in rows))
    for k in keys:
        mem = [r["run_mem"][k] for r in rows if r["run_mem"][k] is not None]
        if mem:
            nv.figure(f"{k} GPU memory", round(statistics.median(mem)), "MiB",
                      how + ": the process' usedGpuMemory, median (CUDA context included)")
    fm = [r["foreign_mem"] for r in rows if r["foreign_mem"] is not None]
    if fm:
        nv.figure("foreign process GPU memory", round(statistics.median(fm)), "MiB",
                  how + ": usedGpuMemory, median (64 MiB tensor + CUDA context)")


def _utilisation(nv: Step, rows: list[dict], how: str) -> None:
    pairs = [(r["util"], r["smi_util"]) for r in rows if None not in (r["util"], r["smi_util"])]
    if not pairs:
        nv.check("utilisation read by the console and nvidia-smi", False, "n/a in every reading")
        return
    nv.figure("GPU utilisation, console", statistics.median(a for a, _ in pairs), "%",
              how + ": gpus[].util_pct (NVML nvmlDeviceGetUtilizationRates), median")
    nv.figure("GPU utilisation, nvidia-smi", statistics.median(b for _, b in pairs), "%",
              "nvidia-smi --query-gpu=utilization.gpu right after each reading, median")
    diff = max(abs(a - b) for a, b in pairs)
    nv.figure("utilisation difference, largest", diff, "percentage points",
              "|console - nvidia-smi| over the paired readings (each averages its own "
              "last sampling window)")
    nv.check("utilisation plausible: > 0 while training, within 30 points of nvidia-smi",
             statistics.median(a for a, _ in pairs) > 0 and diff <= 30, f"largest gap {diff:.0f}")


def _memory(nv: Step, rows: list[dict], how: str) -> None:
    pairs = [(r["mem"], r["smi_mem"]) for r in rows if None not in (r["mem"], r["smi_mem"])]
    if pairs:
        nv.figure("GPU memory used, console", round(statistics.median(a for a, _ in pairs)), "MiB",
                  how + ": gpus[].mem_used_mb, median")
        nv.figure("GPU memory used, nvidia-smi", round(statistics.median(b for _, b in pairs)),
                  "MiB", "nvidia-smi --query-gpu=memory.used right after each reading, median")
        diff = max(abs(a - b) for a, b in pairs)
        nv.figure("memory difference, largest", round(diff), "MiB", "|console - nvidia-smi| "
                  "(NVML's memory info v1, which the console reads, may count the driver's "
                  "reserved memory that nvidia-smi lists apart)")
        tol = max(1024.0, 0.05 * statistics.median(b for _, b in pairs))
        nv.check(f"memory plausible: within {tol:.0f} MiB of nvidia-smi", diff <= tol)
    diffs = [d for r in rows for d in r["proc_diff"]]
    if diffs:
        nv.figure("per-process memory difference, largest", round(max(diffs)), "MiB",
                  "|console usedGpuMemory - nvidia-smi --query-compute-apps used_memory|, same pid")


def container_fallback(ctx: Ctx, nv: Step, gpu: dict, folds: dict, keys: list[str],
                       pids: dict, foreign: int) -> None:
    """The console's attribution as it runs inside a container, where NVML's pids (the host's)
    match none of ours: the same NVML processes, hidden from the pid match."""
    owners = console_module(CONSOLE_GPU_OWNERS)
    procs = [(p["pid"], p["used_mb"], False) for p in gpu["processes"]]
    runs = [owners.OurRun(k, f"gpu{ctx.index}", set(), folds[k].get("peak_mem_mb")) for k in keys]
    owner = owners.attribute({ctx.index: procs}, runs)
    got = {pid: key for (_, pid), key in owner.items()}
    ok = set(got) == set(pids.values()) and set(got.values()) == set(keys)
    exact = all(got.get(pids[k]) == k for k in keys)
    nv.check("container fallback: our two processes to our two runs, the foreign one foreign", ok,
             f"attributed {got}; truth {dict((v, k) for k, v in pids.items())}; foreign {foreign}")
    nv.fact("container fallback, run for each pid",
            "as by pid" if exact else "swapped between the two folds (equal configurations: the "
            "memory order cannot tell them apart)",
            f"{CONSOLE_GPU_OWNERS}.attribute() on this reading's NVML processes with every pid "
            "marked not visible, runs' peak_mem_mb from status --json")
