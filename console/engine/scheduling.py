"""Scheduling, the last phase of a tick: which queued runs may start now, and on which
device (dependencies, CPU/GPU slots). Deciding only; `console.engine.launching` starts them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from console.engine import team
from console.gpu.allocation import DeviceUse, free_cpu_slot, gpu_slots
from console.gpu.nvml import NvmlReading
from console.engine.priority import boosted, in_priority
from console.engine.runstate import RunState as S
from console.engine.runstate import Run

if TYPE_CHECKING:
    from console.engine.core import Engine


def blocker(eng: "Engine", run: Run) -> str | None:
    """Why a queued run cannot start now; None when its dependencies are complete (also for
    "run now": it goes first, but never without its inputs)."""
    for dep in run.job.depends_on:
        d = eng.runs.get(dep)
        if d is not None and d.state != S.COMPLETED:
            return dep
    for first in run.job.starts_after:     # staggered start: let it unpack and train first
        d = eng.runs.get(first)
        if (d is not None and d.wanted and d.state not in (S.COMPLETED, S.FAILED, S.STOPPED)
                and d.metrics.epoch is None):      # no epoch done yet (a resumed one has)
            return first
    return None


def dead_end(eng: "Engine", run: Run, seen: set | None = None) -> str | None:
    """A dependency (transitively) that will not complete without the user: failed,
    stopped or not launched."""
    seen = seen if seen is not None else set()
    for dep in run.job.depends_on:
        d = eng.runs.get(dep)
        if d is None or dep in seen or d.state == S.COMPLETED:
            continue
        seen.add(dep)
        if d.state in (S.FAILED, S.STOPPED) or not d.wanted:
            return dep
        deeper = dead_end(eng, d, seen)
        if deeper:
            return deeper
    return None


def in_use(eng: "Engine", gpu_mode: bool) -> list[DeviceUse]:
    """The devices our live runs hold (with their process trees when GPUs are shared)."""
    out = []
    for r in eng.runs.values():
        if r.handle is not None and r.device:
            pids = eng.backend.process_ids(r.handle) if gpu_mode else {r.handle.pid}
            out.append(DeviceUse(r.device, pids))
    return out


def parallel(eng: "Engine", reading: NvmlReading) -> int:
    """How many runs may run at once (sizes each run's CPU thread share)."""
    if reading.available is True and reading.gpus:
        usable = len([g for g in reading.gpus if not g.lost])
        return max(1, usable * eng.exp.devices.runs_per_gpu)
    return eng.exp.devices.cpu_slots


def ready(eng: "Engine", now: float) -> list[Run]:
    """Runs that may start now, in priority order (a "run now" stage and the inputs it waits
    for first, then the experiment's order); ends backoffs that are over."""
    out = []
    for run in eng.runs.values():
        if run.state == S.BACKOFF and run.backoff_until is not None and now >= run.backoff_until:
            run.state, run.backoff_until = S.QUEUED, None
        if (run.state == S.QUEUED and run.wanted and blocker(eng, run) is None
                and not team.foreign(eng, run.key)):
            out.append(run)
    boost = boosted(eng.runs, lambda k: eng.runs[k].job.depends_on if k in eng.runs else ())
    return in_priority(out, boost)


def place(eng: "Engine", run: Run, reading: NvmlReading, used: list[DeviceUse]) -> str | None:
    """A free device for `run` now ("cpu1", "gpu0", "cpu" beside the GPUs), or None."""
    gpu_mode = reading.available is True and bool(reading.gpus)
    if reading.available is False:
        return free_cpu_slot(eng.exp.devices, used)
    if not run.job.needs_gpu:
        return "cpu"
    if gpu_mode:
        free = gpu_slots(eng.exp.devices, reading, eng.selected_gpus, used)
        return free[0] if free else None
    return None


def missing_gpus(eng: "Engine", reading: NvmlReading) -> str | None:
    """`devices.gpus` naming GPUs that do not exist: which, and which exist (or that there
    are none), instead of runs queued forever without a word."""
    asked = eng.selected_gpus
    if asked is None or reading.available is None:     # "all", or NVML not sampled yet
        return None
    if eng.backend.queues_runs:                          # Slurm: gres picks the GPUs, not us
        return None
    if reading.available is False or not reading.gpus:
        why = f" ({reading.message})" if reading.message else ""
        return (f"devices.gpus asks for GPU {', '.join(map(str, sorted(asked)))}, but no GPU "
                f"is available{why}: running on the CPU slots instead")
    have = sorted(g.index for g in reading.gpus)
    gone = sorted(set(asked) - set(have))
    if not gone:
        return None
    usable = sorted(set(asked) & set(have))
    tail = (f"; using {', '.join(map(str, usable))}" if usable else
            "; no selected GPU exists, so GPU runs cannot start: fix devices.gpus")
    return (f"devices.gpus names GPU {', '.join(map(str, gone))}, which NVML does not list "
            f"(GPUs here: {', '.join(map(str, have))}){tail}")


def queue_chosen(eng: "Engine", configurations: list[str], folds: list[int]) -> str:
    """Queue the chosen runs that are not done or on their way; says which it queued."""
    added = []
    for run in eng.runs.values():
        job = run.job
        if job.kind == "fold" and not (job.configuration in configurations
                                       and job.fold in folds):
            continue
        if job.kind == "stage" and job.configuration not in (None, *configurations):
            continue
        if team.foreign(eng, job.key):
            continue
        if run.state == S.COMPLETED or run.handle is not None:
            run.wanted = True
            continue
        if not run.wanted or run.state in (S.FAILED, S.STOPPED):
            run.wanted, run.state, run.restarts, run.message = True, S.QUEUED, 0, None
            run.user_stopped = False
            added.append(run.key)
            if job.kind == "fold":
                eng.decide(run, "queue", "launched by the user")
    if not added:
        return "nothing new to launch: every chosen run is done, running or queued"
    return f"queued {len(added)} runs: {', '.join(added[:8])}" + \
        (" …" if len(added) > 8 else "")
