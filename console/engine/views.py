"""Views, the output of a tick: the `Snapshot` the front ends draw (runs, GPUs with a short
history, decisions), and the per-run details a selected run shows."""

from __future__ import annotations

import os
import time
from collections import deque
from typing import TYPE_CHECKING

from console.engine import scheduling, team
from console.store import disk
from console.backends.select import job_device, job_note
from console.gpu.owners import OurRun, attribute
from console.protocol.model import GpuProcessView, GpuView, RunView, Snapshot
from console.gpu.nvml import NvmlReading
from console.engine.results import enrich
from console.engine.runstate import ACTIVE, FINAL
from console.engine.runstate import RunState as S
from console.engine.runstate import Run
from contracts.layout import run_files

if TYPE_CHECKING:
    from console.engine.core import Engine

HISTORY = 300           # GPU history points (the panel shows the last few, the GPU screen 60)


def run_view(eng: "Engine", run: Run, now: float, gpu_block: str | None = None) -> RunView:
    """The run as the front ends show it; `gpu_block`: why no GPU run can start at all."""
    m, job = run.metrics, run.job
    state = run.state
    message = run.message
    if not run.wanted and state not in FINAL:
        state, message = S.STOPPED, message or "not launched"
    elif state == S.QUEUED and not eng.read_only and not team.foreign(eng, run.key):
        dead = scheduling.dead_end(eng, run)
        blocker = dead or scheduling.blocker(eng, run)
        if dead:
            message = f"blocked: {dead} did not complete"
        elif blocker:
            message = f"waiting for {blocker}"
        elif job.needs_gpu and gpu_block:
            message = gpu_block
    elif state == S.BACKOFF and run.backoff_until is not None:
        message = f"{run.message or ''} (restart in {max(0.0, run.backoff_until - now):.0f}s)"
    age = None
    if run.handle is not None and run.last_activity is not None and not eng.read_only:
        age = now - run.last_activity
    elif m.last_t is not None and state in ACTIVE:
        age = max(0.0, time.time() - m.last_t)       # log times are wall-clock
    device, job_info = run.device, None
    if run.handle is not None and run.handle.job_id:
        job_info = (eng.backend.describe(run.handle) if eng.backend.queues_runs
                    else {"job_id": run.handle.job_id, "node": run.handle.host})
        device = job_device(job_info)
        note = job_note(job_info)
        message = note if not message else f"{note}; {message}"
    return RunView(
        key=job.key, kind=job.kind, label=job.label, state=state.value,
        configuration=job.configuration, fold=job.fold, device=device, job=job_info,
        pid=run.handle.pid if run.handle else None,
        epoch=m.epoch, epochs=m.epochs, iteration=m.iteration,
        iterations_per_epoch=m.iterations_per_epoch, samples_per_s=m.samples_per_s,
        train_loss=m.train_loss, val_dice=m.val_dice, ema_dice=m.ema_dice,
        best_dice=m.best_dice, eta_s=m.eta_s() if state in ACTIVE else None,
        restarts=run.total_restarts, last_event_age_s=age, progress=m.progress,
        message=message, depends_on=job.depends_on, epoch_s=m.epoch_time_s,
        data_wait_frac=m.data_wait_frac, peak_mem_mb=m.peak_mem_mb,
        val_dice_per_class=m.val_dice_per_class, run_dir=str(job.run_dir),
        run_now=run.run_now, host=run.handle.host if run.handle else None,
        pid_started=run.handle.create_time if run.handle else None)


class GpuHistory:
    """The last HISTORY utilisation and memory samples per GPU (one per NVML reading)."""

    def __init__(self) -> None:
        self._hist: dict[int, tuple[deque, deque]] = {}
        self._seen: dict[int, float] = {}

    def update(self, reading: NvmlReading) -> None:
        for g in reading.gpus:
            uh, mh = self._hist.setdefault(g.index, (deque(maxlen=HISTORY),
                                                     deque(maxlen=HISTORY)))
            if self._seen.get(g.index) == reading.t:
                continue
            self._seen[g.index] = reading.t
            if g.util_pct is not None:
                uh.append(g.util_pct)
            if g.mem_used_mb is not None and g.mem_total_mb:
                mh.append(100.0 * g.mem_used_mb / g.mem_total_mb)

    def of(self, index: int) -> tuple[list, list]:
        uh, mh = self._hist.get(index, ((), ()))
        return list(uh), list(mh)


def gpu_views(eng: "Engine", reading: NvmlReading) -> list[GpuView]:
    owner: dict[tuple[int, int], str] = {}
    if reading.gpus:
        ours = [OurRun(r.key, r.device, set(eng.backend.process_ids(r.handle)),
                       r.metrics.peak_mem_mb)
                for r in eng.runs.values() if r.handle is not None]
        # by pid; inside a container (host pids) by GPU and memory (console.gpu.owners)
        owner = attribute({g.index: [(p.pid, p.used_mb, p.visible) for p in g.processes or []]
                           for g in reading.gpus}, ours)
    eng.gpu_history.update(reading)
    views = []
    for g in reading.gpus:
        util_h, mem_h = eng.gpu_history.of(g.index)
        views.append(GpuView(
            index=g.index, name=g.name, uuid=g.uuid, util_pct=g.util_pct,
            mem_used_mb=g.mem_used_mb, mem_total_mb=g.mem_total_mb, temp_c=g.temp_c,
            power_w=g.power_w, power_limit_w=g.power_limit_w, lost=g.lost,
            selected=eng.selected_gpus is None or g.index in eng.selected_gpus,
            processes=[GpuProcessView(p.pid, p.used_mb, owner.get((g.index, p.pid)),
                                      p.user, p.command)
                       for p in (g.processes or [])],
            util_history=util_h, mem_history=mem_h))
    return views


def snapshot(eng: "Engine", now: float, reading: NvmlReading) -> Snapshot:
    gpu_block = None
    if reading.available is True and reading.gpus and eng.selected_gpus is not None and not (
            eng.selected_gpus & {g.index for g in reading.gpus}):
        gpu_block = scheduling.missing_gpus(eng, reading)
    views = [run_view(eng, r, now, gpu_block) for r in eng.runs.values()]
    wanted = [r for r in eng.runs.values() if r.wanted]
    pending = [r for r in wanted if r.state in ACTIVE or r.state in (S.BACKOFF, S.WAITING)
               or (r.state == S.QUEUED and (eng.read_only or not scheduling.dead_end(eng, r)))]
    finished = not pending
    succeeded = finished and bool(wanted) and all(r.state == S.COMPLETED for r in wanted)
    snap = Snapshot(time=now, runs=views, gpus=gpu_views(eng, reading),
                    cpu_mode=reading.available is False,
                    cpu_slots=eng.exp.devices.cpu_slots, nvml_message=reading.message,
                    watchdog_enabled=eng.watchdog_enabled, read_only=eng.read_only,
                    finished=finished, succeeded=succeeded,
                    decisions=list(eng.decisions.recent)[-200:], notices=notices(eng, reading),
                    cluster=eng.backend.partition_view(),
                    nvml_problems=list(reading.problems))
    enrich(snap, eng.results_reader)      # stage outcomes and the Results view
    return snap


def notices(eng: "Engine", reading: NvmlReading) -> list[str]:
    """What the user must see now, loudest first (header of every front end)."""
    out = list(eng.write_errors.values())
    if eng.state_notice:
        out.append(eng.state_notice)
    waiting = [r.key for r in eng.runs.values() if r.state == S.WAITING]
    if waiting:
        out.append(f"waiting for disk space ({', '.join(waiting)}): "
                   f"{disk.free_text(eng.layout.root)}")
    gpus = scheduling.missing_gpus(eng, reading)
    if gpus:
        out.append(gpus)
    return out


# -- details of one run (the detail screen) ------------------------------------------------
def stderr_tail(run: Run, lines: int = 40, since: int = 0) -> list[str]:
    """The last `lines` lines of the run's stderr.log written after byte `since` (reads at
    most the last 64 KiB)."""
    try:
        with open(run_files(run.job.run_dir)["stderr"], "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(since if since <= size else 0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-lines:]


def checkpoints(run: Run) -> list[tuple[str, float]]:
    """(path, mtime) of the run's checkpoints, by name."""
    out = []
    try:
        for p in sorted(run_files(run.job.run_dir)["checkpoints"].iterdir()):
            if p.suffix == ".pt":
                out.append((str(p), p.stat().st_mtime))
    except OSError:
        pass
    if not out:                 # nnU-Net's and commands' checkpoints, as their events named them
        for path in sorted(set(run.metrics.checkpoints.values())):
            try:
                out.append((path, os.stat(path).st_mtime))
            except OSError:
                pass
    return out
