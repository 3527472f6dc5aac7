"""The watchdog's phase of a tick over runs that are alive: SIGTERM escalated to SIGKILL,
stalls, lost GPUs and NVML calls that fail, disk space coming back, and chaos mode."""

from __future__ import annotations

import random
from typing import Callable

from console.backends.base import Backend
from console.engine.runstate import RunState as S
from console.engine.table import RunTable, Settings
from console.gpu.nvml import NvmlReading
from console.store import disk
from contracts.experiment import Experiment


class Watchdog:
    def __init__(self, runs: RunTable, backend: Backend, decide: Callable, exp: Experiment,
                 settings: Settings, rng: random.Random, chaos_every_s: float | None,
                 now: float) -> None:
        self.runs, self.backend, self.decide = runs, backend, decide
        self.cfg, self.root, self.settings, self.rng = exp.watchdog, exp.layout.root, settings, rng
        self._nvml_said: set[str] = set()
        # --chaos SECONDS: SIGKILL a random running fold now and then, to show the watchdog
        self.chaos_every_s = chaos_every_s
        self._next_chaos = now + chaos_every_s if chaos_every_s else None

    def tick(self, now: float, reading: NvmlReading) -> None:
        self.escalate(now)
        self.lost_gpus(reading)
        self.nvml_problems(reading)
        if self.settings.watchdog_enabled:
            self.stalls(now)
        self.chaos(now)
        self.space_back()

    def escalate(self, now: float) -> None:
        """SIGKILL the groups still alive after their grace period."""
        for run in self.runs.alive():
            if run.term_deadline is not None and now >= run.term_deadline:
                self.backend.cancel(run.handle, force=True)
                run.term_deadline = None
                self.decide(run, "kill", "still alive after the grace period: " + (
                    f"scancel job {run.handle.job_id}" if run.handle.job_id
                    else "SIGKILL to its group"))

    def stalls(self, now: float) -> None:
        limit = self.cfg.stall_timeout_s
        for run in self.runs.alive():
            if (run.stalled or run.stop_requested or run.last_activity is None
                    or now - run.last_activity <= limit):
                continue
            if self.backend.is_pending(run.handle):
                run.last_activity = now          # waiting in the cluster's queue: no stall
                continue
            run.stalled, run.state = True, S.STALLED
            run.term_deadline = now + self.cfg.grace_period_s
            self.backend.cancel(run.handle)
            self.decide(run, "stall", f"no new event for {now - run.last_activity:.0f}s "
                        f"(stall_timeout_s={limit:g}): SIGTERM, SIGKILL after "
                        f"{self.cfg.grace_period_s:g}s, then restart")

    def lost_gpus(self, reading: NvmlReading) -> None:
        lost = {f"gpu{g.index}" for g in reading.gpus if g.lost}
        for run in self.runs.alive():
            if run.device in lost and not run.gpu_lost:
                run.gpu_lost = True
                self.backend.cancel(run.handle, force=True)
                self.decide(run, "gpu_lost", f"{run.device} is lost: killing the run to "
                            "reschedule it on another device")

    def nvml_problems(self, reading: NvmlReading) -> None:
        """Each failing NVML call once in events.jsonl, with its cause (the GPU screen lists
        them too), instead of a silent n/a."""
        for problem in reading.problems:
            if problem not in self._nvml_said:
                self._nvml_said.add(problem)
                self.decide(None, "nvml", f"{problem}; shown as n/a")

    def space_back(self) -> None:
        """Runs waiting for disk space go back to the queue once there is room."""
        for run in self.runs:
            if run.state != S.WAITING:
                continue
            u = disk.usage(self.root)
            if u is not None and u[0] >= (run.wait_for_free or 0):
                run.state, run.wait_for_free, run.wait_reason = S.QUEUED, None, None
                run.message = None
                self.decide(run, "retry", f"{disk.mb(u[0])} free on {self.root} now: "
                            "trying again")
            else:
                why = f" ({run.wait_reason})" if run.wait_reason else ""
                run.message = f"waiting for disk space: {disk.free_text(self.root)}{why}"

    def chaos(self, now: float) -> None:
        if self._next_chaos is None or now < self._next_chaos:
            return
        self._next_chaos = now + self.chaos_every_s * self.rng.uniform(0.5, 1.5)
        victims = [r for r in self.runs.alive() if r.job.kind == "fold" and r.state == S.RUNNING]
        if victims:
            run = self.rng.choice(victims)
            self.decide(run, "chaos", "chaos mode: SIGKILL to show the watchdog")
            self.backend.cancel(run.handle, force=True)
