"""The run table: the experiment's runs in the job graph's order, and the questions every
phase of a tick asks about that graph (what a queued run waits for, what will never complete,
what may start now and in which order). Plus the user's run-time settings the phases read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from console.engine.runstate import RunState as S
from console.engine.runstate import Run
from console.kinds.jobs import Job


@dataclass
class Settings:
    """What the user changes while the supervisor runs (kept in state.json)."""
    watchdog_enabled: bool
    selected_gpus: set[int] | None      # None: every GPU
    hold: bool = False                  # supervise and stop, never launch (`foldwatch stop`)


class RunTable:
    """`Run`s by key, in job order; `owns(key)` is False for a team member's runs."""

    def __init__(self, jobs: list[Job], owns: Callable[[str], bool] = lambda key: True) -> None:
        self.runs: dict[str, Run] = {}
        for job in jobs:
            run = Run(job)
            run.reset_log()
            self.runs[job.key] = run
        self.owns = owns

    def __getitem__(self, key: str) -> Run:
        return self.runs[key]

    def __contains__(self, key: str) -> bool:
        return key in self.runs

    def __iter__(self) -> Iterator[Run]:
        return iter(self.runs.values())

    def get(self, key: str) -> Run | None:
        return self.runs.get(key)

    def keys(self):
        return self.runs.keys()

    def values(self):
        return self.runs.values()

    def items(self):
        return self.runs.items()

    def foreign(self, key: str) -> bool:
        """Another team member's run, or a stage this supervisor has not claimed (yet)."""
        return not self.owns(key)

    def alive(self) -> list[Run]:
        """Runs with a process (or batch job) right now."""
        return [r for r in self.runs.values() if r.handle is not None]

    # -- the graph ------------------------------------------------------------------------
    def blocker(self, run: Run) -> str | None:
        """Why a queued run cannot start now; None when its dependencies are complete (also
        for "run now": it goes first, but never without its inputs)."""
        for dep in run.job.depends_on:
            d = self.runs.get(dep)
            if d is not None and d.state != S.COMPLETED:
                return dep
        for first in run.job.starts_after:     # staggered start: let it unpack and train first
            d = self.runs.get(first)
            if (d is not None and d.wanted and d.state not in (S.COMPLETED, S.FAILED, S.STOPPED)
                    and d.metrics.epoch is None):      # no epoch done yet (a resumed one has)
                return first
        return None

    def dead_end(self, run: Run, seen: set | None = None) -> str | None:
        """A dependency (transitively) that will not complete without the user: failed,
        stopped or not launched."""
        seen = seen if seen is not None else set()
        for dep in run.job.depends_on:
            d = self.runs.get(dep)
            if d is None or dep in seen or d.state == S.COMPLETED:
                continue
            seen.add(dep)
            if d.state in (S.FAILED, S.STOPPED) or not d.wanted:
                return dep
            deeper = self.dead_end(d, seen)
            if deeper:
                return deeper
        return None

    def boosted(self) -> set[str]:
        """Runs wanted now ("run now") and everything they still wait for, transitively."""
        out: set[str] = set()
        stack = [k for k, r in self.runs.items() if r.run_now and r.state != S.COMPLETED]
        while stack:
            k = stack.pop()
            if k in out or k not in self.runs or self.runs[k].state == S.COMPLETED:
                continue
            out.add(k)
            stack.extend(self.runs[k].job.depends_on)
        return out

    def ready(self, now: float) -> list[Run]:
        """Runs that may start now, in priority order (a "run now" stage and the inputs it
        waits for first, then the experiment's order); ends backoffs that are over."""
        out = []
        for run in self.runs.values():
            if run.state == S.BACKOFF and run.backoff_until is not None and now >= run.backoff_until:
                run.state, run.backoff_until = S.QUEUED, None
            if (run.state == S.QUEUED and run.wanted and self.blocker(run) is None
                    and not self.foreign(run.key)):
                out.append(run)
        boost = self.boosted()
        return sorted(out, key=lambda r: r.key not in boost)      # stable: the job order

    def pending(self, watching: bool) -> list[Run]:
        """Wanted runs that are not over: active, waiting to restart, or queued with a way
        to start (`watching`: a supervisor judges dead ends; an offline view cannot)."""
        return [r for r in self.runs.values() if r.wanted and (
            r.state in (S.STARTING, S.RUNNING, S.STALLED, S.BACKOFF, S.WAITING)
            or (r.state == S.QUEUED and (not watching or not self.dead_end(r))))]

    def report_bugs(self, decide) -> None:
        """Illegal state transitions seen outside tests: logged, never silent."""
        for run in self.runs.values():
            while run.bugs:
                decide(run, "bug", run.bugs.pop(0))
