"""The UI-free engine behind `console.protocol.model.EngineControl`: coordinates the tick and
owns the user's actions. One supervisor process runs it per experiment
(console.supervisor); clients reach it only through that supervisor.

The supervisor calls `poll()` twice a second. One tick: supervision (read the logs, reap,
escalate, stalls, lost GPUs, chaos; console.engine.supervision), scheduling and launching
(console.engine.scheduling, console.engine.launching), persistence (console.store.statefile)
and the views (console.engine.views). Nothing here blocks for long; NVML is sampled in its
own thread. `read_only`: a one-off view of an experiment no supervisor has run (`foldwatch
status`), which writes nothing.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable

from console.engine import (adoption, cleanup, launching, priority, scheduling, supervision,
                            team, views)
from console.store import disk, statefile
from console.backends.base import Backend
from console.store.claims import Claims
from console.backends.select import make_backend, queues_runs
from console.engine.decisions import DecisionLog
from console.kinds.jobs import Job
from console.kinds import kind_for
from console.protocol.model import EpochPoint, Snapshot
from console.gpu.nvml import NvmlSampler
from console.engine.results import ResultsReader
from console.engine.runstate import RunState as S
from console.engine.runstate import Run
from console.store.tailer import Tailer
from contracts.errors import ConfigError
from contracts.experiment import Experiment, load_experiment


def _raise(e: BaseException | None) -> None:
    if e is not None:
        raise e


class ReadOnlyError(ConfigError):
    """An action was called on a read-only engine."""


class Engine:
    """Implements console.protocol.model.EngineControl; a context manager (close() on exit)."""

    def __init__(self, experiment: Experiment | str | Path, *, read_only: bool = False,
                 autostart: bool = True, clock: Callable[[], float] = time.time,
                 backend: Backend | None = None, sampler: NvmlSampler | None = None,
                 rng: random.Random | None = None, chaos_every_s: float | None = None,
                 hold: bool = False, runs: list[str] | None = None) -> None:
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
        self.hold = hold                  # True: supervise and stop, never launch (foldwatch stop)
        self.chaos = supervision.Chaos(chaos_every_s, clock())
        if backend is None:
            backend = make_backend(experiment, read_only=read_only)
        self.backend = backend
        self.watchdog_enabled = experiment.watchdog.enabled
        g = experiment.devices.gpus
        self.selected_gpus: set[int] | None = None if g == "all" else set(g)
        # Team split (--runs): claims on those runs, and this console's own state files.
        self.claims: Claims | None = None
        self.state_path, events_path = self.layout.state, self.layout.console_events
        if not read_only:           # `foldwatch status` on a fresh experiment writes nothing
            try:
                self.layout.console_dir.mkdir(parents=True, exist_ok=True)
                if runs is not None:
                    self.claims = Claims(self.layout, team.check_runs(experiment, runs))
                    self.claims.acquire()     # ClaimBusy naming the holders of taken runs
                    own = self.layout.team_console_dir(self.claims.id)
                    own.mkdir(parents=True, exist_ok=True)
                    self.state_path, events_path = own / "state.json", own / "events.jsonl"
            except OSError as e:
                raise ConfigError(f"cannot use {self.layout.console_dir} for the console's "
                                  f"state: {e.strerror or e} ({disk.free_text(self.layout.root)})"
                                  ". Check that the results folder is writable and has "
                                  "space.") from None
        self.decisions = DecisionLog(events_path, write=not read_only)
        for ev in Tailer(events_path).read():     # earlier sessions' decisions, for the views
            self.decisions.ingest(ev)
        self._state_file = statefile.StateFile(self.state_path)
        self.requester: str | None = None        # who asked for the action in progress
        # foldwatch, nnunetv2 or command (console/kinds/)
        self.kind = kind_for(experiment, launching=not read_only)
        self.jobs: list[Job] = self.kind.build_jobs()
        self.runs: dict[str, Run] = {}
        for job in self.jobs:
            run = Run(job)
            run.reset_log()
            self.runs[job.key] = run
        self.gpu_history = views.GpuHistory()
        self.results_reader = ResultsReader(self.layout, list(experiment.configurations))
        self.write_errors: dict[str, str] = {}   # file -> why it cannot be written now
        self.state_notice: str | None = None     # damaged state.json, said loudly
        self.sampler = sampler if sampler is not None else NvmlSampler(clock=clock)
        self.sampler.start()
        loaded = statefile.load_state(self.state_path)
        now = clock()
        for run in self.runs.values():
            supervision.tail(self, run, now)
        self.state_notice = loaded.notice
        if read_only:
            adoption.apply_saved(self, loaded.data)
            return
        removed = cleanup.clean_stale_temps(cleanup.temp_folders(self))
        if removed:
            self.decide(None, "cleanup", f"removed {len(removed)} stale temp file(s) left by "
                        f"killed writers: {', '.join(p.name for p in removed[:5])}")
        if loaded.notice:
            self.decide(None, "state", loaded.notice)
        elif loaded.source == "fresh" and any(r.metrics.starts for r in self.runs.values()):
            self.decide(None, "state", f"no {self.state_path.name} yet: the runs were "
                        "re-discovered from their folders (metrics.jsonl, run locks)")
        if loaded.damaged:
            try:
                kept = self._state_file.set_aside_damaged()
                if kept is not None:
                    self.state_notice += f"; the damaged file is kept as {kept.name}"
            except OSError:
                pass
        elif loaded.source == "state":
            self._state_file.trust_current()
        adoption.restore(self, loaded.data, autostart, now)
        self.save_state()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the tick -----------------------------------------------------------------------------
    def poll(self) -> Snapshot:
        now = self.clock()
        reading = self.sampler.latest()
        for run in self.runs.values():
            supervision.tail(self, run, now)
        if not self.read_only:
            if self.claims is not None:
                team.sync(self, now)
            supervision.reap(self, now)
            supervision.escalate(self, now)
            supervision.lost_gpus(self, reading)
            supervision.nvml_problems(self, reading)
            if self.watchdog_enabled:
                supervision.stalls(self, now)
            self.chaos.tick(self, now)
            supervision.space_back(self)
            if not self.hold:
                self._schedule(now, reading)
            self._report_bugs()
            self.save_state()
            self._flush_decisions()
        return views.snapshot(self, now, reading)

    def _schedule(self, now: float, reading) -> None:
        ready = scheduling.ready(self, now)
        if not ready:
            return
        if queues_runs(self.backend):       # Slurm queues them; the cluster decides where
            for run in ready:
                launching.launch(self, run, "slurm", now, reading)
            return
        gpu_mode = reading.available is True and bool(reading.gpus)
        used = scheduling.in_use(self, gpu_mode)
        for run in ready:
            device = scheduling.place(self, run, reading, used)
            if device is None:
                continue
            launching.launch(self, run, device, now, reading)
            if run.handle is not None:
                used.append(scheduling.DeviceUse(device, {run.handle.pid}))

    def _report_bugs(self) -> None:
        """Illegal state transitions seen outside tests: logged, never silent."""
        for run in self.runs.values():
            while run.bugs:
                self.decide(run, "bug", run.bugs.pop(0))

    def decide(self, run: Run | None, action: str, reason: str, **extra) -> None:
        """Record a decision (console/events.jsonl and the views); an action a client asked
        for names it (`by`)."""
        if self.requester is not None:
            extra.setdefault("by", self.requester)
        self.decisions.record(self.clock(), run.key if run else None, action, reason, **extra)

    def save_state(self) -> bool:
        """Write state.json now (atomic, fsync'd); False when the disk refused (the state
        stays in memory, the header says why, the next tick tries again)."""
        if self.read_only:
            return False
        return self._write("console/state.json", lambda: self._state_file.save(
            adoption.state_of(self)))

    def _flush_decisions(self) -> None:
        self._write("console/events.jsonl", lambda: self.decisions.flush() or (
            _raise(self.decisions.error)))

    def _write(self, name: str, fn) -> bool:
        try:
            fn()
        except OSError as e:
            why = e.strerror or str(e)
            if disk.is_no_space(e):
                why += f"; {disk.free_text(self.layout.root)}"
            self.write_errors[name] = f"cannot write {name}: {why}; kept in memory, retried " \
                                      "every tick"
            return False
        self.write_errors.pop(name, None)
        return True

    # -- views for a selected run ------------------------------------------------------------
    def epoch_history(self, key: str) -> list[EpochPoint]:
        run = self.runs.get(key)
        return list(run.metrics.history) if run else []

    def stderr_tail(self, key: str, lines: int = 40) -> list[str]:
        run = self.runs.get(key)
        return views.stderr_tail(run, lines) if run else []

    def checkpoints(self, key: str) -> list[tuple[str, float]]:
        run = self.runs.get(key)
        return views.checkpoints(run) if run else []

    def decisions_for(self, key: str):
        return self.decisions.for_run(key)

    # -- actions ------------------------------------------------------------------------------
    def _foreign(self, key: str) -> str:
        return f"{key} belongs to another console of the team: read-only here"

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError("this console is read-only (--read-only)")

    def launch(self, configurations: list[str], folds: list[int],
               gpus: list[int] | None = None) -> str:
        """Queue the chosen runs that are not done or on their way; says which it queued."""
        self._check_writable()
        said = self.select_gpus(gpus) + "; " if gpus is not None else ""
        return said + scheduling.queue_chosen(self, configurations, folds)

    def stop(self, key: str, final: bool = True) -> str:
        """Graceful stop. `final`: the user's wish, kept by later consoles (a run stopped
        by --stop-on-exit is not final: `foldwatch up` continues it)."""
        self._check_writable()
        run = self.runs.get(key)
        if run is None:
            return f"{key}: no such run"
        if team.foreign(self, key):
            return self._foreign(key)
        until = "; it stays stopped until you resume it (r)" if final else ""
        if run.handle is None:
            if run.state in (S.QUEUED, S.BACKOFF, S.WAITING):
                if final:
                    run.user_stopped = True
                run.run_now = False
                run.state, run.backoff_until, run.message = S.STOPPED, None, "stopped before start"
                self.decide(run, "stop", "removed from the queue")
                return f"{key} taken out of the queue{until}"
            return f"{key} is {run.state.value}: nothing to stop"
        if final:
            run.user_stopped = True
        if run.stop_requested:
            return f"{key} is stopping already"
        grace = self.exp.watchdog.grace_period_s
        run.stop_requested = True
        run.term_deadline = self.clock() + grace
        self.backend.cancel(run.handle)
        how = (f"scancel --signal=TERM job {run.handle.job_id}; scancel after {grace:g}s"
               if run.handle.job_id else f"SIGTERM to its group; SIGKILL after {grace:g}s")
        self.decide(run, "stop", how)
        return f"{key} stopping: it saves a checkpoint and exits (killed after {grace:g}s){until}"

    def kill(self, key: str) -> str:
        self._check_writable()
        if team.foreign(self, key):
            return self._foreign(key)
        run = self.runs.get(key)
        if run is None or run.handle is None:
            return f"{key} has no process to kill" + (f" ({run.state.value})" if run else "")
        run.stop_requested = run.user_stopped = True
        self.backend.cancel(run.handle, force=True)
        self.decide(run, "kill", f"scancel job {run.handle.job_id} (user)" if run.handle.job_id
                    else "SIGKILL to its group (user)")
        how = f"scancel job {run.handle.job_id}" if run.handle.job_id else \
            "SIGKILL to its process group"
        return f"{key} killed ({how}); r resumes it from its last checkpoint"

    def resume(self, key: str) -> str:
        self._check_writable()
        if team.foreign(self, key):
            return self._foreign(key)
        run = self.runs.get(key)
        if run is None:
            return f"{key}: no such run"
        if run.handle is not None or (run.wanted and run.state in (S.QUEUED, S.BACKOFF,
                                                                   S.WAITING)):
            return f"{key} is {run.state.value} already: nothing to resume"
        if run.state == S.COMPLETED and run.job.kind == "fold":
            return f"{key} is completed; x restarts it from scratch"
        run.wanted, run.state, run.restarts, run.message = True, S.QUEUED, 0, None
        run.user_stopped = False
        self.decide(run, "resume", "queued again by the user")
        waiting = scheduling.blocker(self, run)
        return f"{key} queued again" + (f"; it waits for {waiting}" if waiting else
                                        "; it continues from its last checkpoint")

    def restart_from_scratch(self, key: str) -> str:
        self._check_writable()
        if team.foreign(self, key):
            return self._foreign(key)
        run = self.runs.get(key)
        if run is None:
            return f"{key}: no such run"
        if run.handle is not None:
            run.scratch_pending = True
            self.stop(key)
            return f"{key} stopping; then its folder is moved aside and it starts from scratch"
        return self.move_aside(run)

    def move_aside(self, run: Run) -> str:
        return cleanup.move_aside(self, run)

    def imported(self, keys: list[str]) -> str:
        """Folds `foldwatch import` just put in place: read again from their folders, and
        completed when their log says so. [Minimal version for issue #20, on the transfer
        branch: to be reconciled with the engine refactor.]"""
        self._check_writable()
        done, other = [], []
        for key in keys:
            run = self.runs.get(key)
            if run is None:
                other.append(f"{key}: no such run")
                continue
            if run.handle is not None:
                other.append(f"{key} is {run.state.value} here: not taken")
                continue
            run.reset_log()
            supervision.tail(self, run, self.clock())
            end = run.metrics.end
            if end is None or end.get("status") != "completed" or end.get("exit_code", 0) != 0:
                other.append(f"{key}: its log does not end completed")
                continue
            run.restore(S.COMPLETED)
            run.wanted, run.user_stopped, run.message = True, False, None
            self.decide(run, "import", "imported from another machine: completed")
            done.append(key)
        said = f"imported {', '.join(done)}: completed" if done else "nothing imported"
        return said + (f"; {'; '.join(other)}" if other else "")

    def set_watchdog(self, enabled: bool) -> str:
        self._check_writable()
        if enabled != self.watchdog_enabled:
            self.watchdog_enabled = enabled
            self.decide(None, "watchdog", "enabled" if enabled else "disabled")
        return ("watchdog on: crashed or hung runs are restarted" if enabled else
                "watchdog off: crashed or hung runs stay as they are")

    def select_gpus(self, gpus: list[int] | None) -> str:
        self._check_writable()
        self.selected_gpus = None if gpus is None else set(gpus)
        which = "all GPUs" if gpus is None else f"GPUs {', '.join(map(str, sorted(gpus)))}"
        self.decide(None, "select_gpus", which)
        return f"runs use {which}"

    def run_stage_now(self, stage: str) -> str:
        """"Run now": ahead of queued folds as soon as its inputs are complete (a wish kept
        in state.json); an input that cannot complete is named and nothing starts."""
        self._check_writable()
        if team.foreign(self, stage):
            return self._foreign(stage)
        return priority.run_now(self, stage)

    def stop_all(self, final: bool = True) -> str:
        self._check_writable()
        stopped = [key for key, run in self.runs.items()
                   if (run.handle is not None or run.state in (S.QUEUED, S.BACKOFF, S.WAITING))
                   and not team.foreign(self, key)]
        for key in stopped:
            self.stop(key, final=final)
        return (f"stopping {len(stopped)} run(s): {', '.join(stopped[:6])}"
                f"{' …' if len(stopped) > 6 else ''}" if stopped else "nothing to stop")

    def close(self) -> None:
        """Leave the runs running; let go of the claims, the sampler and the files. Once."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self.sampler.close()
        if not self.read_only:
            self.save_state()
        try:
            self.decisions.close()
        except OSError:
            pass                      # disk still full: what could not be written is lost
        if self.claims is not None:
            self.claims.release()
