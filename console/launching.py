"""Starting one run: the trainer command line, its environment, the backend call."""

from __future__ import annotations

import os
import shlex
import sys
from typing import TYPE_CHECKING

from console import scheduling
from console.allocation import cpu_threads
from console.backend import LaunchSpec
from console.nvml import NvmlReading
from console.runstate import RunState as S
from console.runstate import Run
from contracts.layout import run_files

if TYPE_CHECKING:
    from console.engine import Engine


def trainer_prefix() -> list[str]:
    """`python -m trainer`, or the shlex-split FOLDWATCH_TRAINER (tests use a stand-in)."""
    custom = os.environ.get("FOLDWATCH_TRAINER")
    if custom:
        return shlex.split(custom)
    return [sys.executable, "-m", "trainer"]


def command(eng: "Engine", run: Run, device: str, reading: NvmlReading) -> LaunchSpec:
    """What to start for `run` on `device` (ARCHITECTURE.md section 5)."""
    job = run.job
    resume = job.kind == "fold" and run_files(job.run_dir)["latest"].exists()
    argv = trainer_prefix() + job.argv(eng.exp.source, resume=resume,
                                       overrides=run.overrides if job.kind == "fold" else None)
    threads = cpu_threads(eng.exp.devices, scheduling.parallel(eng, reading))
    env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID",
           "CUDA_VISIBLE_DEVICES": device[3:] if device.startswith("gpu") else "",
           "FOLDWATCH_CPU_THREADS": str(threads)}
    return LaunchSpec(job.key, argv, job.run_dir, env)


def launch(eng: "Engine", run: Run, device: str, now: float, reading: NvmlReading) -> None:
    spec = command(eng, run, device, reading)
    try:
        handle = eng.backend.submit(spec)
    except OSError as e:
        run.state, run.message = S.FAILED, f"could not start {spec.argv[0]}: {e.strerror or e}"
        eng.decide(run, "fail", run.message)
        return
    run.handle, run.device, run.state = handle, device, S.STARTING
    run.force = False
    run.starts_at_launch = run.metrics.starts
    run.launched_at = run.last_activity = now
    run.message = None
    flags = " --resume" if "--resume" in spec.argv else ""
    if run.overrides and run.job.kind == "fold":
        flags += (f" (batch size {run.overrides.get('batch_size')}, grad accumulation "
                  f"{run.overrides.get('grad_accumulation')})")
    eng.decide(run, "launch", f"pid {handle.pid} on {device}{flags}", argv=spec.argv,
               pid=handle.pid)
