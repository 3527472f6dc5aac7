"""The UI-free engine behind `console.protocol.model.EngineControl`: it builds the phases of a
tick around one run table and coordinates them. One supervisor process runs it per experiment
(console.supervisor); clients reach it only through that supervisor.

The supervisor calls `poll()` twice a second. One tick, each phase an object with narrow
collaborators (the run table, the backend, the decision log, the settings):
  LogReader (console.engine.logs)      read what the runs logged
  Team (console.engine.team)           others' runs, stage claims (team split only)
  ExitJudge (console.engine.exits)     reap exited processes, apply the watchdog's rules
  Watchdog (console.engine.watch)      escalate, stalls, lost GPUs, disk space, chaos
  Scheduler (console.engine.scheduling) start what may start (Launcher: how)
  persistence (console.store.statefile) state.json, only when it changed
  Views (console.engine.views)         the Snapshot
Nothing here blocks for long; NVML is sampled in its own thread. `read_only`: a one-off view
of an experiment no supervisor has run (`foldwatch status`), which writes nothing.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Callable

from console.backends.base import Backend
from console.backends.select import make_backend
from console.engine import cleanup
from console.engine.actions import Actions
from console.engine.adoption import StartUp, offline_view
from console.engine.decisions import Decider, DecisionLog
from console.engine.details import checkpoints, stderr_tail
from console.engine.exits import Adopter, ExitJudge
from console.engine.launching import Launcher
from console.engine.logs import LogReader
from console.engine.results import ResultsReader
from console.engine.scheduling import Scheduler
from console.engine.table import RunTable, Settings
from console.engine.team import Team, check_runs
from console.engine.views import Views
from console.engine.watch import Watchdog
from console.gpu.nvml import NvmlSampler
from console.kinds import kind_for
from console.protocol.model import EpochPoint, Snapshot
from console.store import disk, statefile
from console.store.claims import Claims
from console.store.tailer import Tailer
from contracts.errors import ConfigError
from contracts.experiment import Experiment, load_experiment


class Engine:
    """Implements console.protocol.model.EngineControl; a context manager (close() on exit)."""

    def __init__(self, experiment: Experiment | str | Path, *, read_only: bool = False,
                 autostart: bool = True, clock: Callable[[], float] = time.time,
                 backend: Backend | None = None, sampler: NvmlSampler | None = None,
                 rng: random.Random | None = None, chaos_every_s: float | None = None,
                 hold: bool = False, runs: list[str] | None = None) -> None:
        exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
        if exp.source is None:
            raise ConfigError("the engine needs an experiment loaded from a file "
                              "(the trainer reads the same file)")
        self.exp, self.layout, self.read_only, self.clock = exp, exp.layout, read_only, clock
        self.backend = backend if backend is not None else make_backend(exp, read_only=read_only)
        g = exp.devices.gpus
        self.settings = Settings(exp.watchdog.enabled, None if g == "all" else set(g), hold)
        home = self._home(runs)
        self.state_path = home.state
        self.decisions = DecisionLog(home.events, write=not read_only)
        for ev in Tailer(home.events).read():     # earlier decisions, for the views
            self.decisions.ingest(ev)
        self.decide = Decider(self.decisions, clock)
        self.kind = kind_for(exp, launching=not read_only)   # foldwatch, nnunetv2 or command
        self.team = Team(self.claims, self.layout, exp.watchdog.stall_timeout_s, self.decide)
        self.runs = RunTable(self.kind.build_jobs(), owns=self.team.owns)
        self._state_file = statefile.StateFile(self.state_path)
        self.write_errors: dict[str, str] = {}   # file -> why it cannot be written now
        self.state_notice: str | None = None     # damaged state.json, said loudly
        self.logs = LogReader(self.decide, watching=not read_only)
        adopter = Adopter(self.backend, self.decide)
        self.exits = ExitJudge(self.runs, self.backend, self.decide, exp, self.settings,
                               self.logs, adopter, lambda run: cleanup.move_aside(run, self.decide),
                               rng or random.Random())
        self.watchdog = Watchdog(self.runs, self.backend, self.decide, exp, self.settings,
                                 self.exits.rng, chaos_every_s, clock())
        launcher = Launcher(self.backend, self.kind, self.decide, exp, adopter, self.save_state)
        self.scheduler = Scheduler(self.runs, self.backend, self.decide, exp.devices,
                                   self.settings, launcher, self.save_state)
        self.actions = Actions(self.runs, self.backend, self.decide, self.settings,
                               self.scheduler, self.logs, clock, exp.watchdog.grace_period_s,
                               writable=not read_only)
        self.views = Views(self.runs, self.backend, exp, self.settings, self.decisions,
                           ResultsReader(self.kind.results_source()),
                           self.scheduler.missing_gpus, self._conditions,
                           watching=not read_only)
        self.sampler = sampler if sampler is not None else NvmlSampler(clock=clock)
        self.sampler.start()
        self._closed = False
        self._start(autostart, adopter)

    def _home(self, runs: list[str] | None):
        """This engine's folder (console/, or its own in a team split) and its claims."""
        self.claims: Claims | None = None
        if runs is not None and not self.read_only:
            self.claims = Claims(self.layout, check_runs(self.exp, runs))
        home = self.layout.supervisor_home(self.claims.id if self.claims else None)
        if self.read_only:                     # `foldwatch status` writes nothing
            return home
        try:
            home.dir.mkdir(parents=True, exist_ok=True)
            if self.claims is not None:
                self.claims.acquire()          # ClaimBusy naming the holders of taken runs
        except OSError as e:
            raise ConfigError(f"cannot use {home.dir} for the supervisor's state: "
                              f"{e.strerror or e} ({disk.free_text(self.layout.root)}). Check "
                              "that the results folder is writable and has space.") from None
        return home

    def _start(self, autostart: bool, adopter: Adopter) -> None:
        """state.json checked against the living (console.engine.adoption)."""
        loaded = statefile.load_state(self.state_path)
        now = self.clock()
        self.logs.read_all(self.runs, now)
        self.state_notice = loaded.notice
        if self.read_only:
            offline_view(self.runs, self.team, self.settings, loaded.data,
                         self.layout.state.exists())
            return
        removed = cleanup.clean_stale_temps(cleanup.temp_folders(
            [self.layout.console_dir, self.state_path.parent], self.runs))
        if removed:
            self.decide(None, "cleanup", f"removed {len(removed)} stale temp file(s) left by "
                        f"killed writers: {', '.join(p.name for p in removed[:5])}")
        if loaded.notice:
            self.decide(None, "state", loaded.notice)
        elif loaded.source == "fresh" and any(r.metrics.starts for r in self.runs):
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
        saved = loaded.data
        if saved.get("selected_gpus") is not None:
            self.settings.selected_gpus = set(saved["selected_gpus"])
        self.settings.watchdog_enabled = saved.get("watchdog_enabled",
                                                   self.settings.watchdog_enabled)
        StartUp(self.runs, self.backend, self.decide, adopter, self.exits, self.team,
                self.logs).restore(saved, autostart, now)
        self.save_state()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the tick -----------------------------------------------------------------------------
    def poll(self) -> Snapshot:
        now = self.clock()
        reading = self.sampler.latest()
        self.logs.read_all(self.runs, now)
        if not self.read_only:
            self.team.sync(self.runs, now)
            self.exits.reap(now)
            self.watchdog.tick(now, reading)
            self.scheduler.tick(now, reading)
            self.runs.report_bugs(self.decide)
            self.save_state()
            self._write("console/events.jsonl", self._flush_decisions)
        return self.views.snapshot(now, reading)

    @property
    def requester(self) -> str | None:
        """Who asked for the action in progress (named as `by` in its decisions)."""
        return self.decide.requester

    @requester.setter
    def requester(self, who: str | None) -> None:
        self.decide.requester = who

    # -- persistence --------------------------------------------------------------------------
    def state(self) -> dict:
        """What state.json keeps (console.store.statefile validates it on load)."""
        sel = self.settings.selected_gpus
        return {"version": statefile.VERSION, "engine_pid": os.getpid(),
                "experiment": str(self.exp.source),
                "watchdog_enabled": self.settings.watchdog_enabled,
                "selected_gpus": sorted(sel) if sel is not None else None,
                "runs": {r.key: r.to_record() for r in self.runs}}

    def save_state(self) -> bool:
        """Write state.json now (atomic, fsync'd); False when the disk refused (the state
        stays in memory, every client's header says why, the next tick tries again)."""
        if self.read_only:
            return False
        return self._write("console/state.json", lambda: self._state_file.save(self.state()))

    def _flush_decisions(self) -> None:
        if not self.decisions.flush():
            raise self.decisions.error

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

    def _conditions(self) -> list[str]:
        """What every client says first: writes that fail, a damaged state file."""
        return list(self.write_errors.values()) + ([self.state_notice]
                                                   if self.state_notice else [])

    # -- queries about one run (the detail screen) ----------------------------------------------
    def epoch_history(self, key: str) -> list[EpochPoint]:
        run = self.runs.get(key)
        return list(run.metrics.history) if run else []

    def stderr_tail(self, key: str, lines: int = 40) -> list[str]:
        run = self.runs.get(key)
        return stderr_tail(run, lines) if run else []

    def checkpoints(self, key: str) -> list[tuple[str, float]]:
        run = self.runs.get(key)
        return checkpoints(run) if run else []

    # -- the user's actions (console.engine.actions) --------------------------------------------
    def launch(self, configurations: list[str], folds: list[int],
               gpus: list[int] | None = None) -> str:
        return self.actions.launch(configurations, folds, gpus)

    def stop(self, key: str, final: bool = True) -> str:
        return self.actions.stop(key, final)

    def kill(self, key: str) -> str:
        return self.actions.kill(key)

    def resume(self, key: str) -> str:
        return self.actions.resume(key)

    def restart_from_scratch(self, key: str) -> str:
        return self.actions.restart_from_scratch(key)

    def imported(self, keys: list[str]) -> str:
        return self.actions.imported(keys)

    def set_watchdog(self, enabled: bool) -> str:
        return self.actions.set_watchdog(enabled)

    def select_gpus(self, gpus: list[int] | None) -> str:
        return self.actions.select_gpus(gpus)

    def run_stage_now(self, stage: str) -> str:
        return self.actions.run_stage_now(stage)

    def stop_all(self, final: bool = True) -> str:
        return self.actions.stop_all(final)

    def close(self) -> None:
        """Leave the runs running; let go of the claims, the sampler and the files. Once."""
        if self._closed:
            return
        self._closed = True
        self.sampler.close()
        self.save_state()
        try:
            self.decisions.close()
        except OSError:
            pass                      # disk still full: what could not be written is lost
        self.team.release()
