"""Scheduling, the last phase of a tick: which queued runs may start now and on which device
(dependencies, CPU/GPU slots), then starting them (console.engine.launching). And the
user's wishes about the queue: launch these runs, run this stage now."""

from __future__ import annotations

from typing import Callable

from console.backends.base import Backend
from console.engine.launching import Launcher
from console.engine.runstate import RunState as S
from console.engine.runstate import Run
from console.engine.table import RunTable, Settings
from console.gpu.allocation import DeviceUse, free_cpu_slot, gpu_slots
from console.gpu.nvml import NvmlReading
from contracts.experiment import Devices


class Scheduler:
    def __init__(self, runs: RunTable, backend: Backend, decide: Callable, devices: Devices,
                 settings: Settings, launcher: Launcher, persist: Callable[[], bool]) -> None:
        self.runs, self.backend, self.decide = runs, backend, decide
        self.devices, self.settings, self.launcher = devices, settings, launcher
        self.persist = persist

    def tick(self, now: float, reading: NvmlReading) -> None:
        """Start what may start now (nothing while holding: `foldwatch stop`)."""
        if self.settings.hold:
            return
        ready = self.runs.ready(now)
        if not ready:
            return
        parallel = self.parallel(reading)
        if self.backend.queues_runs:        # Slurm queues them; the cluster decides where
            for run in ready:
                self.launcher.launch(run, "slurm", now, parallel)
            return
        gpu_mode = reading.available is True and bool(reading.gpus)
        used = self.in_use(gpu_mode)
        for run in ready:
            device = self.place(run, reading, used)
            if device is None:
                continue
            self.launcher.launch(run, device, now, parallel)
            if run.handle is not None:
                used.append(DeviceUse(device, {run.handle.pid}))

    def in_use(self, gpu_mode: bool) -> list[DeviceUse]:
        """The devices our live runs hold (with their process trees when GPUs are shared)."""
        return [DeviceUse(r.device, self.backend.process_ids(r.handle) if gpu_mode
                          else {r.handle.pid})
                for r in self.runs.alive() if r.device]

    def parallel(self, reading: NvmlReading) -> int:
        """How many runs may run at once (sizes each run's CPU thread share)."""
        if reading.available is True and reading.gpus:
            usable = len([g for g in reading.gpus if not g.lost])
            return max(1, usable * self.devices.runs_per_gpu)
        return self.devices.cpu_slots

    def place(self, run: Run, reading: NvmlReading, used: list[DeviceUse]) -> str | None:
        """A free device for `run` now ("cpu1", "gpu0", "cpu" beside the GPUs), or None."""
        if reading.available is False:
            return free_cpu_slot(self.devices, used)
        if not run.job.needs_gpu:
            return "cpu"
        if reading.available is True and reading.gpus:
            free = gpu_slots(self.devices, reading, self.settings.selected_gpus, used)
            return free[0] if free else None
        return None

    def missing_gpus(self, reading: NvmlReading) -> str | None:
        """`devices.gpus` naming GPUs that do not exist: which, and which exist (or that there
        are none), instead of runs queued forever without a word."""
        asked = self.settings.selected_gpus
        if asked is None or reading.available is None or self.backend.queues_runs:
            return None                 # "all", NVML not sampled yet, or Slurm's gres picks
        if reading.available is False or not reading.gpus:
            why = f" ({reading.message})" if reading.message else ""
            return (f"devices.gpus asks for GPU {', '.join(map(str, sorted(asked)))}, but no "
                    f"GPU is available{why}: running on the CPU slots instead")
        have = sorted(g.index for g in reading.gpus)
        gone = sorted(set(asked) - set(have))
        if not gone:
            return None
        usable = sorted(set(asked) & set(have))
        tail = (f"; using {', '.join(map(str, usable))}" if usable else
                "; no selected GPU exists, so GPU runs cannot start: fix devices.gpus")
        return (f"devices.gpus names GPU {', '.join(map(str, gone))}, which NVML does not "
                f"list (GPUs here: {', '.join(map(str, have))}){tail}")

    # -- the user's wishes ----------------------------------------------------------------
    def queue_chosen(self, configurations: list[str], folds: list[int]) -> str:
        """Queue the chosen runs that are not done or on their way; says which it queued."""
        added = []
        for run in self.runs:
            job = run.job
            if job.kind == "fold" and not (job.configuration in configurations
                                           and job.fold in folds):
                continue
            if job.kind == "stage" and job.configuration not in (None, *configurations):
                continue
            if self.runs.foreign(job.key):
                continue
            if run.state == S.COMPLETED or run.handle is not None:
                run.wanted = True
                continue
            if not run.wanted or run.state in (S.FAILED, S.STOPPED):
                run.wanted, run.state, run.restarts, run.message = True, S.QUEUED, 0, None
                run.user_stopped = False
                added.append(run.key)
                if job.kind == "fold":
                    self.decide(run, "queue", "launched by the user")
        if not added:
            return "nothing new to launch: every chosen run is done, running or queued"
        return f"queued {len(added)} runs: {', '.join(added[:8])}" + \
            (" …" if len(added) > 8 else "")

    def run_now(self, stage: str) -> str:
        """"Run now": ahead of the queued runs as soon as its inputs are complete (a wish
        kept in state.json at once); an input that cannot complete is named, nothing starts."""
        run = self.runs.get(stage)
        if run is None or run.job.kind != "stage":
            return f"{stage}: no such stage in this experiment"
        if run.handle is not None:
            return f"{stage} is running already"
        dead = self.runs.dead_end(run)
        if dead:
            d = self.runs[dead]
            why = d.state.value if d.wanted else "not launched"
            return (f"{stage} cannot run: its input {dead} is {why} and will not complete; "
                    "resume it first (r). Nothing started")
        run.wanted, run.run_now, run.state, run.message = True, True, S.QUEUED, None
        run.restarts, run.user_stopped = 0, False
        self.decide(run, "queue", "run now (by the user)")
        self.persist()                   # the wish outlives this supervisor from now on
        waiting = self.runs.blocker(run)
        return (f"{stage} goes ahead of the queued runs: " + (
            f"it starts once {waiting} and its other inputs are complete" if waiting else
            "it starts as soon as a slot is free"))
