"""Which device a run may start on: CPU slots, or GPU slots honouring runs_per_gpu,
min_free_vram_gb, foreign processes and the console's own allocation table."""

from __future__ import annotations

import os
from dataclasses import dataclass

from console.gpu.nvml import NvmlReading
from contracts.experiment import Devices


@dataclass
class DeviceUse:
    device: str                   # "gpu0", "cpu1"
    pids: set[int]                # the run's process tree (to tell ours from foreign)


def cpu_threads(devices: Devices, parallel: int) -> int:
    """Threads each run may use (FOLDWATCH_CPU_THREADS)."""
    if devices.cpu_threads_per_run != "auto":
        return int(devices.cpu_threads_per_run)
    return max(1, (os.cpu_count() or 1) // max(1, parallel))


def free_cpu_slot(devices: Devices, in_use: list[DeviceUse]) -> str | None:
    taken = {u.device for u in in_use}
    for i in range(devices.cpu_slots):
        if f"cpu{i}" not in taken:
            return f"cpu{i}"
    return None


def gpu_slots(devices: Devices, reading: NvmlReading, selected: set[int] | None,
              in_use: list[DeviceUse]) -> list[str]:
    """GPUs with a free slot right now, best first (fewest of our runs, most free memory)."""
    out = []
    for g in reading.gpus:
        if g.lost or (selected is not None and g.index not in selected):
            continue
        dev = f"gpu{g.index}"
        ours = [u for u in in_use if u.device == dev]
        if len(ours) >= devices.runs_per_gpu:
            continue
        our_pids = set().union(*(u.pids for u in in_use)) if in_use else set()
        procs = g.processes
        if procs is None:
            foreign = False   # n/a: cannot tell; memory still guards
            seen = set()
        else:
            foreign = any(p.pid not in our_pids for p in procs)
            seen = {p.pid for p in procs}
        if foreign and not devices.share_with_foreign:
            continue
        if g.mem_total_mb is None or g.mem_used_mb is None:
            if ours:
                continue          # cannot see memory: one run per GPU is the safe guess
            out.append((len(ours), 0.0, dev))
            continue
        free_gb = (g.mem_total_mb - g.mem_used_mb) / 1024
        # Our runs that have not allocated yet still need their share (no double-booking).
        pending = sum(1 for u in ours if not (u.pids & seen))
        if free_gb - pending * devices.min_free_vram_gb < devices.min_free_vram_gb:
            continue
        out.append((len(ours), -free_gb, dev))
    return [d for _, _, d in sorted(out)]
