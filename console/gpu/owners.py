"""Which of our runs each GPU process belongs to, also inside a container.

NVML reports pids in the host's pid namespace. On the host (or with `--pid=host`) they are
our runs' pids; inside a container they are numbers we cannot see in /proc. Then a process
we cannot see on a GPU where our runs are is matched to those runs by memory: largest used
memory to the run whose last epoch peaked highest (a run's memory on the device is its CUDA
peak plus a context of a few hundred MB, so the order is what carries over).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class OurRun:
    key: str
    device: str | None            # "gpu3"
    pids: set[int]                # the run's process group, in our namespace
    peak_mem_mb: float | None = None


def in_container(proc: str = "/proc") -> bool:
    """True when this process lives in a nested pid namespace (docker, podman, k8s, LXC)."""
    try:
        with open(os.path.join(proc, "self", "status")) as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return len(line.split()) > 2     # one pid per namespace level
    except OSError:
        pass
    try:
        with open(os.path.join(proc, "self", "cgroup")) as f:
            text = f.read()
        return any(w in text for w in ("docker", "kubepods", "containerd", "lxc", "libpod"))
    except OSError:
        return os.path.exists("/.dockerenv")


def attribute(gpu_processes: dict[int, list[tuple[int, float | None, bool]]],
              runs: list[OurRun]) -> dict[tuple[int, int], str]:
    """(gpu index, pid) -> run key for the processes that are ours.

    gpu_processes: per GPU index, (pid, used MB, visible in our /proc) as NVML lists them.
    """
    owner: dict[tuple[int, int], str] = {}
    by_pid = {pid: r.key for r in runs for pid in r.pids}
    for index, procs in gpu_processes.items():
        matched = set()
        for pid, _, _ in procs:
            if pid in by_pid:
                owner[(index, pid)] = by_pid[pid]
                matched.add(by_pid[pid])
        # Host pids: unseen processes on this GPU <-> our runs on it without a process yet.
        unseen = sorted(((pid, mb) for pid, mb, visible in procs
                         if not visible and (index, pid) not in owner),
                        key=lambda pm: -(pm[1] or 0.0))
        waiting = sorted((r for r in runs if r.device == f"gpu{index}" and r.key not in matched),
                         key=lambda r: -(r.peak_mem_mb or 0.0))
        for (pid, _), run in zip(unseen, waiting):
            owner[(index, pid)] = run.key
    return owner
