"""Views, the output of a tick: the `Snapshot` every client draws (runs, GPUs with a short
history, decisions, notices, results)."""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

from console.backends.base import Backend
from console.backends.select import job_device, job_note
from console.engine.decisions import DecisionLog
from console.engine.results import ResultsReader, enrich
from console.engine.runstate import ACTIVE, FINAL
from console.engine.runstate import RunState as S
from console.engine.runstate import Run
from console.engine.table import RunTable, Settings
from console.gpu.nvml import NvmlReading
from console.gpu.owners import OurRun, attribute
from console.protocol.model import GpuProcessView, GpuView, RunView, Snapshot
from console.store import disk
from contracts.experiment import Experiment

HISTORY = 120           # GPU history points (the panel shows the last few, the GPU screen 60)


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


class Views:
    def __init__(self, runs: RunTable, backend: Backend, exp: Experiment, settings: Settings,
                 decisions: DecisionLog, results: ResultsReader,
                 missing_gpus: Callable[[NvmlReading], str | None],
                 conditions: Callable[[], list[str]], *, watching: bool = True) -> None:
        self.runs, self.backend, self.exp, self.settings = runs, backend, exp, settings
        self.decisions, self.results = decisions, results
        self.missing_gpus = missing_gpus     # the scheduler's words for GPUs that do not exist
        self.conditions = conditions         # what the engine must say first (disk full...)
        self.watching = watching             # False: an offline view judges nothing
        self.gpu_history = GpuHistory()

    def snapshot(self, now: float, reading: NvmlReading) -> Snapshot:
        sel = self.settings.selected_gpus
        gpu_block = None
        if reading.available is True and reading.gpus and sel is not None and not (
                sel & {g.index for g in reading.gpus}):
            gpu_block = self.missing_gpus(reading)
        views = [self.run_view(r, now, gpu_block) for r in self.runs]
        wanted = [r for r in self.runs if r.wanted]
        finished = not self.runs.pending(self.watching)
        succeeded = finished and bool(wanted) and all(r.state == S.COMPLETED for r in wanted)
        snap = Snapshot(time=now, runs=views, gpus=self.gpu_views(reading),
                        cpu_mode=reading.available is False,
                        cpu_slots=self.exp.devices.cpu_slots, nvml_message=reading.message,
                        watchdog_enabled=self.settings.watchdog_enabled,
                        read_only=not self.watching, finished=finished, succeeded=succeeded,
                        decisions=list(self.decisions.recent)[-200:],
                        notices=self.notices(reading),
                        cluster=self.backend.partition_view(),
                        nvml_problems=list(reading.problems))
        enrich(snap, self.results)        # stage outcomes and the Results view
        return snap

    def run_view(self, run: Run, now: float, gpu_block: str | None = None) -> RunView:
        """The run as the clients show it; `gpu_block`: why no GPU run can start at all."""
        m, job = run.metrics, run.job
        state, message = run.state, run.message
        if not run.wanted and state not in FINAL:
            state, message = S.STOPPED, message or "not launched"
        elif state == S.QUEUED and self.watching and not self.runs.foreign(run.key):
            dead = self.runs.dead_end(run)
            blocker = dead or self.runs.blocker(run)
            if dead:
                message = f"blocked: {dead} did not complete"
            elif blocker:
                message = f"waiting for {blocker}"
            elif job.needs_gpu and gpu_block:
                message = gpu_block
        elif state == S.BACKOFF and run.backoff_until is not None:
            message = f"{run.message or ''} (restart in {max(0.0, run.backoff_until - now):.0f}s)"
        age = None
        if run.handle is not None and run.last_activity is not None and self.watching:
            age = now - run.last_activity
        elif m.last_t is not None and state in ACTIVE:
            age = max(0.0, time.time() - m.last_t)       # log times are wall-clock
        device, job_info = run.device, None
        if run.handle is not None and run.handle.job_id:
            job_info = (self.backend.describe(run.handle) if self.backend.queues_runs
                        else {"job_id": run.handle.job_id, "node": run.handle.host})
            device = job_device(job_info)
            note = job_note(job_info)
            message = note if not message else f"{note}; {message}"
        h = run.handle
        return RunView(
            key=job.key, kind=job.kind, label=job.label, state=state.value,
            configuration=job.configuration, fold=job.fold, device=device, job=job_info,
            pid=h.pid if h else None, epoch=m.epoch, epochs=m.epochs, iteration=m.iteration,
            iterations_per_epoch=m.iterations_per_epoch, samples_per_s=m.samples_per_s,
            train_loss=m.train_loss, val_dice=m.val_dice, ema_dice=m.ema_dice,
            best_dice=m.best_dice, eta_s=m.eta_s() if state in ACTIVE else None,
            restarts=run.total_restarts, last_event_age_s=age, progress=m.progress,
            message=message, depends_on=job.depends_on, epoch_s=m.epoch_time_s,
            data_wait_frac=m.data_wait_frac, peak_mem_mb=m.peak_mem_mb,
            val_dice_per_class=m.val_dice_per_class, run_dir=str(job.run_dir),
            run_now=run.run_now, host=h.host if h else None,
            pid_started=h.create_time if h else None, origin=run.origin)

    def gpu_views(self, reading: NvmlReading) -> list[GpuView]:
        owner: dict[tuple[int, int], str] = {}
        if reading.gpus:
            ours = [OurRun(r.key, r.device, set(self.backend.process_ids(r.handle)),
                           r.metrics.peak_mem_mb) for r in self.runs.alive()]
            # by pid; inside a container (host pids) by GPU and memory (console.gpu.owners)
            owner = attribute({g.index: [(p.pid, p.used_mb, p.visible)
                                         for p in g.processes or []]
                               for g in reading.gpus}, ours)
        self.gpu_history.update(reading)
        sel = self.settings.selected_gpus
        out = []
        for g in reading.gpus:
            util_h, mem_h = self.gpu_history.of(g.index)
            out.append(GpuView(
                index=g.index, name=g.name, uuid=g.uuid, util_pct=g.util_pct,
                mem_used_mb=g.mem_used_mb, mem_total_mb=g.mem_total_mb, temp_c=g.temp_c,
                power_w=g.power_w, power_limit_w=g.power_limit_w, lost=g.lost,
                selected=sel is None or g.index in sel,
                processes=[GpuProcessView(p.pid, p.used_mb, owner.get((g.index, p.pid)),
                                          p.user, p.command)
                           for p in (g.processes or [])],
                util_history=util_h, mem_history=mem_h))
        return out

    def notices(self, reading: NvmlReading) -> list[str]:
        """What the user must see now, loudest first (the header of every client)."""
        out = list(self.conditions())
        waiting = [r.key for r in self.runs if r.state == S.WAITING]
        if waiting:
            out.append(f"waiting for disk space ({', '.join(waiting)}): "
                       f"{disk.free_text(self.exp.layout.root)}")
        gpus = self.missing_gpus(reading)
        if gpus:
            out.append(gpus)
        return out
