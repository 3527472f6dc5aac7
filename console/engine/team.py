"""The team split in the engine's tick (docs/slurm.md): others' runs are read from their
files, and a pipeline stage is claimed by the first supervisor that sees its inputs complete."""

from __future__ import annotations

from typing import Callable

from console.engine.runstate import RunState as S
from console.engine.runstate import Run
from console.engine.table import RunTable
from console.kinds import kind_for
from console.store.claims import Claims, foreign_state
from contracts.errors import ConfigError
from contracts.experiment import Experiment
from contracts.layout import Layout


class Team:
    """This supervisor's claims (None: it owns the whole experiment) and the team's runs."""

    def __init__(self, claims: Claims | None, layout: Layout, stall_s: float,
                 decide: Callable) -> None:
        self.claims, self.layout, self.stall_s, self.decide = claims, layout, stall_s, decide

    def owns(self, key: str) -> bool:
        return self.claims is None or self.claims.holds(key)

    def refresh(self, run: Run, now: float, runs: RunTable) -> None:
        """A foreign run's state and message from its metrics.jsonl, run.lock and claim (a
        stage's: which of its inputs are not complete yet)."""
        waiting = [d for d in run.job.depends_on if d in runs and runs[d].state != S.COMPLETED]
        state, message = foreign_state(run, self.layout, now, self.stall_s, waiting)
        run.restore(state)                 # not a transition of ours: what the files say
        run.wanted, run.message = True, message

    def sync(self, runs: RunTable, now: float) -> None:
        """Each tick: refresh others' runs; claim stages whose inputs are all complete."""
        if self.claims is None:
            return
        for run in runs:
            if self.owns(run.key):
                continue
            self.refresh(run, now, runs)
            if (run.job.kind != "stage" or run.state != S.QUEUED
                    or any(runs[d].state != S.COMPLETED for d in run.job.depends_on
                           if d in runs)
                    or not self.claims.try_claim(run.key)):
                continue
            self.refresh(run, now, runs)   # the last holder may have finished it just now
            if run.state == S.COMPLETED:
                continue
            run.restore(S.QUEUED)
            run.message = None
            self.decide(run, "claim", "all its inputs are complete: claimed by this supervisor")

    def release(self) -> None:
        if self.claims is not None:
            self.claims.release()


def check_runs(exp: Experiment, runs: list[str]) -> list[str]:
    """--runs keys, checked against the experiment's folds (stages are claimed on demand)."""
    folds = [j.key for j in kind_for(exp, launching=False).build_jobs() if j.kind == "fold"]
    unknown = [r for r in runs if r not in folds]
    if unknown or not runs:
        what = "no runs given" if not runs else "no such fold: " + ", ".join(unknown)
        raise ConfigError(f"--runs {','.join(runs)}: {what}; the experiment's folds are "
                          f"{', '.join(folds)} (stages are claimed by whichever supervisor "
                          "first sees their inputs complete)")
    return list(dict.fromkeys(runs))
