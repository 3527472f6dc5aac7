"""The UI-free engine: scheduler, supervisor and watchdog behind `console.model.EngineControl`.

Front ends call `poll()` on a tick (from a worker thread in the Textual app); each poll
reads what the runs appended to their logs, reaps exited processes, applies the watchdog
rules, starts what may start, saves console/state.json and returns a `Snapshot`.
Nothing here blocks for long; NVML is sampled in its own thread.
"""

from __future__ import annotations

import os
import random
import shlex
import sys
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Callable

from console import watchdog as wd
from console.allocation import DeviceUse, cpu_threads, free_cpu_slot, gpu_slots
from console.backend import Backend, LaunchSpec
from console.decisions import DecisionLog
from console.jobs import Job, build_jobs, configured_batch
from console.lock import ConsoleLock
from console.model import (ACTIVE_STATES, FINAL_STATES, EpochPoint, GpuProcessView, GpuView,
                           RunView, Snapshot)
from console.nvml import NvmlReading, NvmlSampler
from console.runstate import Run
from console.state import StateFile, load_state
from console.tailer import Tailer
from contracts.errors import ConfigError
from contracts.experiment import Experiment, load_experiment
from contracts.jsonio import EventWriter

HISTORY = 60            # GPU gauge history points


class ReadOnlyError(ConfigError):
    """An action was called on a read-only engine."""


def trainer_prefix() -> list[str]:
    """`python -m trainer`, or the shlex-split FOLDWATCH_TRAINER (tests use a stand-in)."""
    custom = os.environ.get("FOLDWATCH_TRAINER")
    if custom:
        return shlex.split(custom)
    return [sys.executable, "-m", "trainer"]


class Engine:
    """Implements console.model.EngineControl."""

    def __init__(self, experiment: Experiment | str | Path, *, read_only: bool = False,
                 autostart: bool = True, clock: Callable[[], float] = time.time,
                 backend: Backend | None = None, sampler: NvmlSampler | None = None,
                 rng: random.Random | None = None, chaos_every_s: float | None = None,
                 hold: bool = False) -> None:
        if not isinstance(experiment, Experiment):
            experiment = load_experiment(experiment)
        if experiment.source is None:
            raise ConfigError("the engine needs an experiment loaded from a file "
                              "(the trainer reads the same file)")
        self.exp = experiment
        self.layout = experiment.layout
        self.read_only = read_only
        self.clock = clock
        self.rng = rng or random.Random()
        self.chaos_every_s = chaos_every_s
        self.hold = hold                  # True: supervise and stop, never launch (foldwatch stop)
        self._next_chaos = clock() + chaos_every_s if chaos_every_s else None
        if backend is None:
            from console.local_backend import LocalBackend
            backend = LocalBackend()
        self.backend = backend
        self.watchdog_enabled = experiment.watchdog.enabled
        g = experiment.devices.gpus
        self.selected_gpus: set[int] | None = None if g == "all" else set(g)
        self._lock: ConsoleLock | None = None
        if not read_only:
            self._lock = ConsoleLock(self.layout.lock)
            self._lock.acquire()          # ConsoleBusy (exit 2) when another console has it
        if not read_only:           # `foldwatch status` on a fresh experiment writes nothing
            self.layout.console_dir.mkdir(parents=True, exist_ok=True)
        self.decisions = DecisionLog(self.layout.console_events, write=not read_only)
        self._events_tail = Tailer(self.layout.console_events)
        for ev in self._events_tail.read():     # earlier sessions' decisions, for the views
            self.decisions.ingest(ev)
        self._state_file = StateFile(self.layout.state)
        self._requests = Tailer(self.layout.console_dir / "requests.jsonl")
        self._requests.read()                   # old requests were handled by earlier consoles
        self.jobs: list[Job] = build_jobs(experiment)
        self.runs: dict[str, Run] = {}
        for job in self.jobs:
            run = Run(job)
            run.reset_log()
            self.runs[job.key] = run
        self._gpu_hist: dict[int, tuple[deque, deque]] = {}
        self.sampler = sampler if sampler is not None else NvmlSampler(clock=clock)
        self.sampler.start()
        saved = load_state(self.layout.state)
        now = clock()
        for run in self.runs.values():
            self._tail(run, now)
        if read_only:
            self._apply_saved(saved)
        else:
            self._restore(saved, autostart, now)
            self._save_state()

    # -- start-up ---------------------------------------------------------------------------
    def _restore(self, saved: dict, autostart: bool, now: float) -> None:
        for key, run in self.runs.items():
            rec = saved["runs"].get(key) or {}
            run.restarts = int(rec.get("restarts") or 0)
            run.total_restarts = int(rec.get("total_restarts") or 0)
            run.overrides = dict(rec.get("overrides") or {})
            run.message = rec.get("message")
            state = rec.get("state")
            pid, ct = rec.get("pid"), rec.get("create_time")
            if state in ACTIVE_STATES and pid and ct:
                run.wanted = True
                handle = self.backend.adopt(key, int(pid), float(ct))
                if handle is not None:
                    run.handle, run.device = handle, rec.get("device")
                    run.state = "running" if run.metrics.starts else "starting"
                    run.starts_at_launch = max(0, run.metrics.starts - 1)
                    run.launched_at = run.last_activity = now
                    self._decide(run, "adopt", f"re-adopted live process {pid} on {run.device}")
                    continue
                run.starts_at_launch = max(0, run.metrics.starts - 1)
                self._on_exit(run, None, now, unattended=True)
                continue
            if state == "stopped" and autostart and rec.get("wanted", True):
                # `foldwatch up` again after a stop: carry on where the run left off
                run.state, run.wanted, run.message = "queued", True, None
                self._decide(run, "resume", "stopped in an earlier session; queued again")
                continue
            if state in FINAL_STATES:
                run.state, run.wanted = state, bool(rec.get("wanted", True))
                continue
            if state in ("queued", "backoff"):
                run.state = "queued"
                run.wanted = autostart or bool(rec.get("wanted", True))
                continue
            end = run.metrics.end
            if end is not None and end.get("status") == "completed" and end.get("exit_code", 0) == 0:
                run.state, run.wanted = "completed", True
            else:
                run.state, run.wanted = "queued", autostart

    def _apply_saved(self, saved: dict) -> None:
        """Read-only view: states as the controlling console saved them, else from the logs."""
        self.watchdog_enabled = bool(saved.get("watchdog_enabled", self.watchdog_enabled))
        for key, run in self.runs.items():
            rec = saved["runs"].get(key)
            if rec:
                run.state = rec.get("state") or "queued"
                run.wanted = bool(rec.get("wanted", True))
                run.device = rec.get("device")
                run.restarts = int(rec.get("restarts") or 0)
                run.total_restarts = int(rec.get("total_restarts") or 0)
                run.message = rec.get("message")
                run.overrides = dict(rec.get("overrides") or {})
                pid, ct = rec.get("pid"), rec.get("create_time")
                run.handle = None
                if pid and ct:
                    from console.backend import Handle
                    run.handle = Handle(key, int(pid), float(ct), adopted=True)
                continue
            end = run.metrics.end
            if end is not None and end.get("status") in FINAL_STATES:
                run.state = end["status"]
                run.wanted = True
            elif run.metrics.starts:
                run.state, run.wanted = "stopped", True
                run.message = "no console state; process not supervised"
            else:
                run.state, run.wanted = "queued", False

    # -- the tick -----------------------------------------------------------------------------
    def poll(self) -> Snapshot:
        now = self.clock()
        reading = self.sampler.latest()
        for ev in self._events_tail.read():
            if self.read_only:
                self.decisions.ingest(ev)
        for run in self.runs.values():
            self._tail(run, now)
        if self.read_only:
            self._apply_saved(load_state(self.layout.state))
        else:
            self._handle_requests()
            self._reap(now)
            self._escalate(now)
            self._lost_gpus(reading, now)
            if self.watchdog_enabled:
                self._stalls(now)
            self._chaos(now)
            if not self.hold:
                self._schedule(now, reading)
            self._save_state()
        return self._snapshot(now, reading)

    def _tail(self, run: Run, now: float) -> None:
        before = run.tailer.offset, run.tailer.resets

        def feed(ev: dict) -> None:
            run.metrics.feed(ev)
            if (ev.get("event") == "epoch" and run.restarts and run.handle is not None
                    and run.metrics.starts > run.starts_at_launch and not self.read_only):
                self._decide(run, "reset", f"completed an epoch after restart; restart counter "
                             f"{run.restarts} -> 0")
                run.restarts = 0

        run.tailer.read_each(feed)
        if (run.tailer.offset, run.tailer.resets) != before:
            run.last_activity = now
            if run.state == "starting" and run.metrics.starts > run.starts_at_launch:
                run.state = "running"
            elif run.state == "stalled" and not run.stalled:
                run.state = "running"

    def _reap(self, now: float) -> None:
        for run in self.runs.values():
            if run.handle is None:
                continue
            done, code = self.backend.poll(run.handle)
            if done:
                self._tail(run, now)          # the `end` event may have just landed
                self._on_exit(run, code, now)

    def _on_exit(self, run: Run, code: int | None, now: float, unattended: bool = False) -> None:
        end = run.metrics.end if run.metrics.starts > run.starts_at_launch else None
        was = run.device
        run.handle, run.device, run.term_deadline = None, None, None
        if run.gpu_lost:
            run.gpu_lost = run.stalled = run.stop_requested = False
            run.state = "queued"
            self._decide(run, "reschedule", f"{was} was lost; rescheduled on another device")
            return
        v = wd.judge_exit(code, end, stop_requested=run.stop_requested, stalled=run.stalled,
                          restarts=run.restarts, cfg=self.exp.watchdog,
                          enabled=self.watchdog_enabled)
        run.stalled = run.stop_requested = False
        if unattended:
            v.reason += " (while no console was watching)"
        if run.scratch_pending:
            run.scratch_pending = False
            self._move_aside(run)
            return
        if v.outcome == "restart":
            run.restarts += 1
            run.total_restarts += 1
            extra = ""
            if v.oom and self.exp.watchdog.auto_fit_on_oom and run.job.kind == "fold":
                cfg = self.exp.configurations[run.job.configuration]
                bs = run.overrides.get("batch_size") or configured_batch(self.exp, cfg,
                                                                         run.job.configuration)
                ga = run.overrides.get("grad_accumulation", cfg.grad_accumulation)
                refit = wd.refit_after_oom(bs, ga)
                if refit:
                    run.overrides = refit
                    extra = (f"; refit batch size {bs} -> {refit['batch_size']}, "
                             f"grad accumulation {ga} -> {refit['grad_accumulation']}")
                    self._decide(run, "refit", f"out of memory: batch size {bs} -> "
                                 f"{refit['batch_size']}, grad accumulation {ga} -> "
                                 f"{refit['grad_accumulation']}", **refit)
            delay = wd.backoff_delay(run.restarts, self.exp.watchdog, self.rng)
            run.state, run.backoff_until = "backoff", now + delay
            run.message = f"{v.reason}{extra}"
            self._decide(run, "restart", f"{v.reason}; restart {run.restarts}/"
                         f"{self.exp.watchdog.max_restarts} with --resume in {delay:.1f}s{extra}")
            return
        run.state = v.outcome
        run.message = None if v.outcome == "completed" else v.reason
        self._decide(run, v.action, v.reason)

    def _escalate(self, now: float) -> None:
        for run in self.runs.values():
            if run.handle is not None and run.term_deadline is not None and now >= run.term_deadline:
                self.backend.cancel(run.handle, force=True)
                run.term_deadline = None
                self._decide(run, "kill", "still alive after the grace period: SIGKILL to its group")

    def _stalls(self, now: float) -> None:
        limit = self.exp.watchdog.stall_timeout_s
        for run in self.runs.values():
            if (run.handle is None or run.stalled or run.stop_requested
                    or run.last_activity is None or now - run.last_activity <= limit):
                continue
            run.stalled, run.state = True, "stalled"
            run.term_deadline = now + self.exp.watchdog.grace_period_s
            self.backend.cancel(run.handle)
            self._decide(run, "stall", f"no new event for {now - run.last_activity:.0f}s "
                         f"(stall_timeout_s={limit:g}): SIGTERM, SIGKILL after "
                         f"{self.exp.watchdog.grace_period_s:g}s, then restart")

    def _lost_gpus(self, reading: NvmlReading, now: float) -> None:
        lost = {f"gpu{g.index}" for g in reading.gpus if g.lost}
        for run in self.runs.values():
            if run.handle is not None and run.device in lost and not run.gpu_lost:
                run.gpu_lost = True
                self.backend.cancel(run.handle, force=True)
                self._decide(run, "gpu_lost", f"{run.device} is lost: killing the run to "
                             "reschedule it on another device")

    def _chaos(self, now: float) -> None:
        if self._next_chaos is None or now < self._next_chaos:
            return
        self._next_chaos = now + self.chaos_every_s * self.rng.uniform(0.5, 1.5)
        victims = [r for r in self.runs.values()
                   if r.job.kind == "fold" and r.state == "running" and r.handle is not None]
        if victims:
            run = self.rng.choice(victims)
            self._decide(run, "chaos", "chaos mode: SIGKILL to show the watchdog")
            self.backend.cancel(run.handle, force=True)

    # -- scheduling ---------------------------------------------------------------------------
    def _blocker(self, run: Run) -> str | None:
        """Why a queued run cannot start now; None when its dependencies are complete."""
        if run.force:
            return None
        for dep in run.job.depends_on:
            d = self.runs.get(dep)
            if d is not None and d.state != "completed":
                return dep
        return None

    def _dead_end(self, run: Run, seen: set | None = None) -> str | None:
        """A dependency (transitively) that will not complete without the user: failed,
        stopped or not launched."""
        seen = seen if seen is not None else set()
        for dep in run.job.depends_on:
            d = self.runs.get(dep)
            if d is None or dep in seen or d.state == "completed":
                continue
            seen.add(dep)
            if d.state in ("failed", "stopped") or not d.wanted:
                return dep
            deeper = self._dead_end(d, seen)
            if deeper:
                return deeper
        return None

    def _in_use(self, gpu_mode: bool) -> list[DeviceUse]:
        out = []
        for r in self.runs.values():
            if r.handle is not None and r.device:
                pids = self.backend.process_ids(r.handle) if gpu_mode else {r.handle.pid}
                out.append(DeviceUse(r.device, pids))
        return out

    def _schedule(self, now: float, reading: NvmlReading) -> None:
        ready = []
        for run in self.runs.values():
            if run.state == "backoff" and run.backoff_until is not None and now >= run.backoff_until:
                run.state, run.backoff_until = "queued", None
            if run.state == "queued" and run.wanted and self._blocker(run) is None:
                ready.append(run)
        if not ready:
            return
        gpu_mode = reading.available is True and bool(reading.gpus)
        cpu_mode = reading.available is False
        in_use = self._in_use(gpu_mode)
        for run in ready:
            device = None
            if cpu_mode:
                device = free_cpu_slot(self.exp.devices, in_use)
            elif not run.job.needs_gpu:
                device = "cpu"
            elif gpu_mode:
                free = gpu_slots(self.exp.devices, reading, self.selected_gpus, in_use)
                device = free[0] if free else None
            if device is None:
                continue
            self._launch(run, device, now, reading)
            if run.handle is not None:
                in_use.append(DeviceUse(device, {run.handle.pid}))

    def _parallel(self, reading: NvmlReading) -> int:
        if reading.available is True and reading.gpus:
            return max(1, len([g for g in reading.gpus if not g.lost]) * self.exp.devices.runs_per_gpu)
        return self.exp.devices.cpu_slots

    def _launch(self, run: Run, device: str, now: float, reading: NvmlReading) -> None:
        job = run.job
        resume = job.kind == "fold" and (job.run_dir / "checkpoints" / "latest.pt").exists()
        argv = trainer_prefix() + job.argv(self.exp.source, resume=resume,
                                           overrides=run.overrides if job.kind == "fold" else None)
        env = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID",
               "CUDA_VISIBLE_DEVICES": device[3:] if device.startswith("gpu") else "",
               "FOLDWATCH_CPU_THREADS": str(cpu_threads(self.exp.devices, self._parallel(reading)))}
        try:
            handle = self.backend.submit(LaunchSpec(job.key, argv, job.run_dir, env))
        except OSError as e:
            run.state, run.message = "failed", f"could not start {argv[0]}: {e.strerror or e}"
            self._decide(run, "fail", run.message)
            return
        run.handle, run.device, run.state = handle, device, "starting"
        run.force = False
        run.starts_at_launch = run.metrics.starts
        run.launched_at = run.last_activity = now
        run.message = None
        flags = " --resume" if resume else ""
        if run.overrides and job.kind == "fold":
            flags += f" (batch size {run.overrides.get('batch_size')}, grad accumulation " \
                     f"{run.overrides.get('grad_accumulation')})"
        self._decide(run, "launch", f"pid {handle.pid} on {device}{flags}", argv=argv,
                     pid=handle.pid)

    def _decide(self, run: Run | None, action: str, reason: str, **extra) -> None:
        self.decisions.record(self.clock(), run.key if run else None, action, reason, **extra)

    # -- persistence ----------------------------------------------------------------------------
    def _save_state(self) -> None:
        if self.read_only:
            return
        self._state_file.save({
            "version": 1, "engine_pid": os.getpid(), "experiment": str(self.exp.source),
            "watchdog_enabled": self.watchdog_enabled,
            "selected_gpus": sorted(self.selected_gpus) if self.selected_gpus is not None else None,
            "runs": {k: r.to_record() for k, r in self.runs.items()}})

    def _handle_requests(self) -> None:
        """Requests from `foldwatch stop` in another shell (console/requests.jsonl)."""
        for ev in self._requests.read():
            if ev.get("event") != "request":
                continue
            action, key = ev.get("action"), ev.get("run")
            if action == "stop_all":
                self._decide(None, "request", "stop all (foldwatch stop)")
                self.stop_all()
            elif action == "stop" and key in self.runs:
                self._decide(self.runs[key], "request", "stop (foldwatch stop)")
                self.stop(key)

    # -- snapshot -----------------------------------------------------------------------------
    def _view(self, run: Run, now: float) -> RunView:
        m, job = run.metrics, run.job
        state = run.state
        message = run.message
        if not run.wanted and state not in FINAL_STATES:
            state, message = "stopped", message or "not launched"
        elif state == "queued" and not self.read_only:
            dead = self._dead_end(run)
            blocker = dead or self._blocker(run)
            if dead:
                message = f"blocked: {dead} did not complete"
            elif blocker:
                message = f"waiting for {blocker}"
        elif state == "backoff" and run.backoff_until is not None:
            message = f"{run.message or ''} (restart in {max(0.0, run.backoff_until - now):.0f}s)"
        age = None
        if run.handle is not None and run.last_activity is not None and not self.read_only:
            age = now - run.last_activity
        elif m.last_t is not None and state in ACTIVE_STATES:
            age = max(0.0, time.time() - m.last_t)
        return RunView(
            key=job.key, kind=job.kind, label=job.label, state=state,
            configuration=job.configuration, fold=job.fold, device=run.device,
            pid=run.handle.pid if run.handle else None,
            epoch=m.epoch, epochs=m.epochs, iteration=m.iteration,
            iterations_per_epoch=m.iterations_per_epoch, samples_per_s=m.samples_per_s,
            train_loss=m.train_loss, val_dice=m.val_dice, ema_dice=m.ema_dice,
            best_dice=m.best_dice, eta_s=m.eta_s() if state in ACTIVE_STATES else None,
            restarts=run.total_restarts, last_event_age_s=age, progress=m.progress,
            message=message, depends_on=job.depends_on)

    def _gpu_views(self, reading: NvmlReading) -> list[GpuView]:
        owner: dict[int, str] = {}
        if reading.gpus:
            for r in self.runs.values():
                if r.handle is not None:
                    for pid in self.backend.process_ids(r.handle):
                        owner[pid] = r.key
        views = []
        for g in reading.gpus:
            uh, mh = self._gpu_hist.setdefault(g.index, (deque(maxlen=HISTORY), deque(maxlen=HISTORY)))
            if self._gpu_hist.get(("t", g.index)) != reading.t:
                self._gpu_hist[("t", g.index)] = reading.t
                if g.util_pct is not None:
                    uh.append(g.util_pct)
                if g.mem_used_mb is not None and g.mem_total_mb:
                    mh.append(100.0 * g.mem_used_mb / g.mem_total_mb)
            views.append(GpuView(
                index=g.index, name=g.name, uuid=g.uuid, util_pct=g.util_pct,
                mem_used_mb=g.mem_used_mb, mem_total_mb=g.mem_total_mb, temp_c=g.temp_c,
                power_w=g.power_w, power_limit_w=g.power_limit_w, lost=g.lost,
                selected=self.selected_gpus is None or g.index in self.selected_gpus,
                processes=[GpuProcessView(p.pid, p.used_mb, owner.get(p.pid))
                           for p in (g.processes or [])],
                util_history=list(uh), mem_history=list(mh)))
        return views

    def _snapshot(self, now: float, reading: NvmlReading) -> Snapshot:
        views = [self._view(r, now) for r in self.runs.values()]
        wanted = [r for r in self.runs.values() if r.wanted]
        pending = [r for r in wanted if r.state in ACTIVE_STATES or r.state == "backoff"
                   or (r.state == "queued" and (self.read_only or not self._dead_end(r)))]
        finished = not pending
        succeeded = finished and bool(wanted) and all(r.state == "completed" for r in wanted)
        return Snapshot(time=now, runs=views, gpus=self._gpu_views(reading),
                        cpu_mode=reading.available is False,
                        cpu_slots=self.exp.devices.cpu_slots, nvml_message=reading.message,
                        watchdog_enabled=self.watchdog_enabled, read_only=self.read_only,
                        finished=finished, succeeded=succeeded,
                        decisions=list(self.decisions.recent)[-200:])

    # -- views for a selected run ------------------------------------------------------------
    def epoch_history(self, key: str) -> list[EpochPoint]:
        run = self.runs.get(key)
        return list(run.metrics.history) if run else []

    def stderr_tail(self, key: str, lines: int = 40) -> list[str]:
        run = self.runs.get(key)
        if run is None:
            return []
        path = run.job.run_dir / "stderr.log"
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 64 * 1024))
                data = f.read()
        except OSError:
            return []
        return data.decode("utf-8", "replace").splitlines()[-lines:]

    def checkpoints(self, key: str) -> list[tuple[str, float]]:
        run = self.runs.get(key)
        if run is None:
            return []
        out = []
        folder = run.job.run_dir / "checkpoints"
        try:
            for p in sorted(folder.iterdir()):
                if p.suffix == ".pt":
                    out.append((str(p), p.stat().st_mtime))
        except OSError:
            pass
        return out

    def decisions_for(self, key: str):
        return self.decisions.for_run(key)

    # -- actions ------------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError("this console is read-only (--read-only)")

    def launch(self, configurations: list[str], folds: list[int],
               gpus: list[int] | None = None) -> None:
        self._check_writable()
        if gpus is not None:
            self.select_gpus(gpus)
        for run in self.runs.values():
            job = run.job
            if job.kind == "fold" and not (job.configuration in configurations
                                           and job.fold in folds):
                continue
            if job.kind == "stage" and job.configuration not in (None, *configurations):
                continue
            if run.state == "completed" or run.handle is not None:
                run.wanted = True
                continue
            if not run.wanted or run.state in ("failed", "stopped"):
                run.wanted, run.state, run.restarts, run.message = True, "queued", 0, None
                if job.kind == "fold":
                    self._decide(run, "queue", "launched by the user")

    def stop(self, key: str) -> None:
        self._check_writable()
        run = self.runs.get(key)
        if run is None:
            return
        if run.handle is None:
            if run.state in ("queued", "backoff"):
                run.state, run.backoff_until, run.message = "stopped", None, "stopped before start"
                self._decide(run, "stop", "removed from the queue")
            return
        if not run.stop_requested:
            run.stop_requested = True
            run.term_deadline = self.clock() + self.exp.watchdog.grace_period_s
            self.backend.cancel(run.handle)
            self._decide(run, "stop", f"SIGTERM to its group; SIGKILL after "
                         f"{self.exp.watchdog.grace_period_s:g}s")

    def kill(self, key: str) -> None:
        self._check_writable()
        run = self.runs.get(key)
        if run is None or run.handle is None:
            return
        run.stop_requested = True
        self.backend.cancel(run.handle, force=True)
        self._decide(run, "kill", "SIGKILL to its group (user)")

    def resume(self, key: str) -> None:
        self._check_writable()
        run = self.runs.get(key)
        if run is None or run.handle is not None or run.state in ("queued", "backoff"):
            return
        if run.state == "completed" and run.job.kind == "fold":
            return
        run.wanted, run.state, run.restarts, run.message = True, "queued", 0, None
        self._decide(run, "resume", "queued again by the user")

    def restart_from_scratch(self, key: str) -> None:
        self._check_writable()
        run = self.runs.get(key)
        if run is None:
            return
        if run.handle is not None:
            run.scratch_pending = True
            self.stop(key)
            return
        self._move_aside(run)

    def _move_aside(self, run: Run) -> None:
        folder = run.job.run_dir
        if folder.exists():
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            target = folder.with_name(f"{folder.name}.old-{stamp}")
            n = 1
            while target.exists():
                target = folder.with_name(f"{folder.name}.old-{stamp}-{n}")
                n += 1
            folder.rename(target)
            self._decide(run, "scratch", f"moved {folder.name} aside to {target.name}; "
                         "starting from scratch")
        run.reset_log()
        run.overrides, run.restarts, run.message = {}, 0, None
        run.wanted, run.state = True, "queued"

    def set_watchdog(self, enabled: bool) -> None:
        self._check_writable()
        if enabled != self.watchdog_enabled:
            self.watchdog_enabled = enabled
            self._decide(None, "watchdog", "enabled" if enabled else "disabled")

    def select_gpus(self, gpus: list[int] | None) -> None:
        self._check_writable()
        self.selected_gpus = None if gpus is None else set(gpus)
        self._decide(None, "select_gpus", "all GPUs" if gpus is None else
                     f"GPUs {', '.join(map(str, sorted(gpus)))}")

    def run_stage_now(self, stage: str) -> None:
        self._check_writable()
        run = self.runs.get(stage)
        if run is None or run.job.kind != "stage" or run.handle is not None:
            return
        run.wanted, run.force, run.state, run.message = True, True, "queued", None
        run.restarts = 0
        self._decide(run, "queue", "run now (by the user)")

    def stop_all(self) -> None:
        self._check_writable()
        for key, run in self.runs.items():
            if run.handle is not None or run.state in ("queued", "backoff"):
                self.stop(key)

    def close(self) -> None:
        """Leave the runs running; let go of the lock, the sampler and the files."""
        self.sampler.close()
        if not self.read_only:
            self._save_state()
        self.decisions.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def send_request(layout, action: str, run: str | None = None) -> None:
    """Ask the controlling console to do something (used by `foldwatch stop`)."""
    with EventWriter(layout.console_dir / "requests.jsonl") as w:
        w.write("request", action=action, run=run)
