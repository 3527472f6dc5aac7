"""The user's actions on runs (console.protocol.model.EngineControl): each changes the run
table at once, returns what it really did in one sentence (the client's toast), and leaves
the work to the next tick."""

from __future__ import annotations

from typing import Callable

from console.backends.base import Backend
from console.engine import cleanup
from console.engine.runstate import RunState as S
from console.engine.logs import LogReader
from console.engine.runstate import Run
from console.engine.scheduling import Scheduler
from console.engine.table import RunTable, Settings
from contracts.errors import ConfigError

WAITING = (S.QUEUED, S.BACKOFF, S.WAITING)       # on their way, no process yet


class ReadOnlyError(ConfigError):
    """An action asked of a view that only shows (no supervisor ever ran here)."""


class Actions:
    def __init__(self, runs: RunTable, backend: Backend, decide: Callable, settings: Settings,
                 scheduler: Scheduler, logs: LogReader, clock: Callable[[], float],
                 grace_s: float, *, writable: bool = True) -> None:
        self.runs, self.backend, self.decide, self.settings = runs, backend, decide, settings
        self.scheduler, self.logs, self.clock, self.grace_s = scheduler, logs, clock, grace_s
        self.writable = writable

    def _writable(self) -> None:
        if not self.writable:
            raise ReadOnlyError("this view is read-only: no supervisor runs this experiment")

    def _run(self, key: str) -> Run | str:
        """The run to act on, or why not (a sentence for the client)."""
        self._writable()
        run = self.runs.get(key)
        if run is None:
            return f"{key}: no such run"
        if self.runs.foreign(key):
            return f"{key} belongs to another member of the team: read-only here"
        return run

    def launch(self, configurations: list[str], folds: list[int],
               gpus: list[int] | None = None) -> str:
        """Queue the chosen runs that are not done or on their way; says which it queued."""
        self._writable()
        said = self.select_gpus(gpus) + "; " if gpus is not None else ""
        return said + self.scheduler.queue_chosen(configurations, folds)

    def stop(self, key: str, final: bool = True) -> str:
        """Graceful stop. `final`: the user's wish, kept by later supervisors (a run stopped
        by --stop-on-exit is not final: `foldwatch up` continues it)."""
        run = self._run(key)
        if isinstance(run, str):
            return run
        until = "; it stays stopped until you resume it (r)" if final else ""
        if run.handle is None:
            if run.state not in WAITING:
                return f"{key} is {run.state.value}: nothing to stop"
            if final:
                run.user_stopped = True
            run.run_now = False
            run.state, run.backoff_until, run.message = S.STOPPED, None, "stopped before start"
            self.decide(run, "stop", "removed from the queue")
            return f"{key} taken out of the queue{until}"
        if final:
            run.user_stopped = True
        if run.stop_requested:
            return f"{key} is stopping already"
        run.stop_requested = True
        run.term_deadline = self.clock() + self.grace_s
        self.backend.cancel(run.handle)
        g = self.grace_s
        how = (f"scancel --signal=TERM job {run.handle.job_id}; scancel after {g:g}s"
               if run.handle.job_id else f"SIGTERM to its group; SIGKILL after {g:g}s")
        self.decide(run, "stop", how)
        return f"{key} stopping: it saves a checkpoint and exits (killed after {g:g}s){until}"

    def kill(self, key: str) -> str:
        run = self._run(key)
        if isinstance(run, str):
            return run
        if run.handle is None:
            return f"{key} has no process to kill ({run.state.value})"
        run.stop_requested = run.user_stopped = True
        self.backend.cancel(run.handle, force=True)
        job = run.handle.job_id
        self.decide(run, "kill", f"scancel job {job} (user)" if job else "SIGKILL to its group (user)")
        how = f"scancel job {job}" if job else "SIGKILL to its process group"
        return f"{key} killed ({how}); r resumes it from its last checkpoint"

    def resume(self, key: str) -> str:
        run = self._run(key)
        if isinstance(run, str):
            return run
        if run.handle is not None or (run.wanted and run.state in WAITING):
            return f"{key} is {run.state.value} already: nothing to resume"
        if run.state == S.COMPLETED and run.job.kind == "fold":
            return f"{key} is completed; x restarts it from scratch"
        run.wanted, run.state, run.restarts, run.message = True, S.QUEUED, 0, None
        run.user_stopped = False
        self.decide(run, "resume", "queued again by the user")
        waiting = self.runs.blocker(run)
        return f"{key} queued again" + (f"; it waits for {waiting}" if waiting else
                                        "; it continues from its last checkpoint")

    def restart_from_scratch(self, key: str) -> str:
        run = self._run(key)
        if isinstance(run, str):
            return run
        if run.handle is not None:
            run.scratch_pending = True         # the exit judge moves it aside once it is gone
            self.stop(key)
            return f"{key} stopping; then its folder is moved aside and it starts from scratch"
        return cleanup.move_aside(run, self.decide)

    def set_watchdog(self, enabled: bool) -> str:
        self._writable()
        if enabled != self.settings.watchdog_enabled:
            self.settings.watchdog_enabled = enabled
            self.decide(None, "watchdog", "enabled" if enabled else "disabled")
        return ("watchdog on: crashed or hung runs are restarted" if enabled else
                "watchdog off: crashed or hung runs stay as they are")

    def select_gpus(self, gpus: list[int] | None) -> str:
        self._writable()
        self.settings.selected_gpus = None if gpus is None else set(gpus)
        which = "all GPUs" if gpus is None else f"GPUs {', '.join(map(str, sorted(gpus)))}"
        self.decide(None, "select_gpus", which)
        return f"runs use {which}"

    def run_stage_now(self, stage: str) -> str:
        """"Run now": ahead of queued folds as soon as its inputs are complete (a wish kept
        in state.json); an input that cannot complete is named and nothing starts."""
        self._writable()
        if stage in self.runs and self.runs.foreign(stage):
            return self._run(stage)            # says whose it is
        return self.scheduler.run_now(stage)

    def stop_all(self, final: bool = True) -> str:
        self._writable()
        keys = [r.key for r in self.runs if (r.handle is not None or r.state in WAITING)
                and not self.runs.foreign(r.key)]
        for key in keys:
            self.stop(key, final=final)
        return (f"stopping {len(keys)} run(s): {', '.join(keys[:6])}"
                f"{' …' if len(keys) > 6 else ''}" if keys else "nothing to stop")

    def imported(self, keys: list[str]) -> str:
        """Folds `foldwatch import` has just put in place (console/transfer): read again from
        their folders, and completed when their log says so; the pipeline goes on."""
        done, other = [], []
        for key in keys:
            run = self._run(key)
            if isinstance(run, str):
                other.append(run)
                continue
            if run.handle is not None:
                other.append(f"{key} is {run.state.value} here: not taken")
                continue
            if not import_completed(run, self.logs, self.clock()):
                other.append(f"{key}: its log does not end completed")
                continue
            self.decide(run, "import", f"imported ({run.origin or 'from another machine'}): "
                        "completed")
            done.append(key)
        said = f"imported {', '.join(done)}: completed" if done else "nothing imported"
        return said + (f"; {'; '.join(other)}" if other else "")


def import_completed(run: Run, logs: LogReader, now: float) -> bool:
    """Read an imported run's folder afresh; completed (True) when its log ends so."""
    run.reset_log()
    logs.read(run, now)
    end = run.metrics.end
    if end is None or end.get("status") != "completed" or end.get("exit_code", 0) != 0:
        return False
    run.restore(S.COMPLETED)
    run.wanted, run.user_stopped, run.message = True, False, None
    run.launch = None
    return True
