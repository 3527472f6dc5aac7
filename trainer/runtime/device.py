"""Which device a run uses and how many CPU threads it may take."""

from __future__ import annotations

import os

import torch


def cpu_threads() -> int:
    """FOLDWATCH_CPU_THREADS (set by the console), else half the usable cores, at most 8."""
    value = os.environ.get("FOLDWATCH_CPU_THREADS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            pass
    return max(1, min(8, usable_cores() // 2))


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def data_workers(setting: int | str, device: torch.device) -> int:
    """DataLoader worker processes for `num_workers` ("auto" or a number).

    auto: none on the CPU, where the training step already uses every thread the run was
    given and a worker would take its CPU from the step (measured in
    bench/trainer_throughput.py: inline batches are faster on a CPU-only machine); on a GPU,
    where the step leaves the CPU free, half the usable cores, at most 8.
    """
    if setting != "auto":
        return int(setting)
    if device.type != "cuda":
        return 0
    return max(1, min(8, usable_cores() // 2))


def pick_device() -> torch.device:
    """CUDA when a GPU is visible (the console sets CUDA_VISIBLE_DEVICES), else the CPU."""
    torch.set_num_threads(cpu_threads())
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed patch size: let cuDNN pick its kernels
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
    return f"cpu ({torch.get_num_threads()} threads)"
