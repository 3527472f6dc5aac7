"""The team split in the engine's tick (docs/slurm.md): others' runs are read from their
files, and a pipeline stage is claimed by the first console that sees its inputs complete."""

from __future__ import annotations

from typing import TYPE_CHECKING

from console.store.claims import foreign_state
from console.kinds import kind_for
from console.engine.runstate import RunState as S
from contracts.errors import ConfigError

if TYPE_CHECKING:
    from console.engine.core import Engine
    from contracts.experiment import Experiment


def foreign(eng: "Engine", key: str) -> bool:
    """Another console's run, or a stage this console has not claimed (yet)."""
    return eng.claims is not None and not eng.claims.holds(key)


def refresh(eng: "Engine", run, now: float) -> None:
    """A foreign run's state and message from its metrics.jsonl, run.lock and claim."""
    waiting = [d for d in run.job.depends_on
               if d in eng.runs and eng.runs[d].state != S.COMPLETED]
    state, message = foreign_state(run, eng.layout, now, eng.exp.watchdog.stall_timeout_s,
                                   waiting)
    run.restore(state)                 # not a transition of ours: what the files say
    run.wanted, run.message = True, message


def sync(eng: "Engine", now: float) -> None:
    """Each tick: refresh others' runs; claim stages whose inputs are all complete."""
    for key, run in eng.runs.items():
        if not foreign(eng, key):
            continue
        refresh(eng, run, now)
        if (run.job.kind != "stage" or run.state != S.QUEUED
                or any(eng.runs[d].state != S.COMPLETED for d in run.job.depends_on
                       if d in eng.runs)
                or not eng.claims.try_claim(key)):
            continue
        refresh(eng, run, now)             # the last holder may have finished it just now
        if run.state == S.COMPLETED:
            continue
        run.restore(S.QUEUED)
        run.message = None
        eng.decide(run, "claim", "all its inputs are complete: claimed by this console")


def check_runs(exp: "Experiment", runs: list[str]) -> list[str]:
    """--runs keys, checked against the experiment's folds (stages are claimed on demand)."""
    folds = [j.key for j in kind_for(exp, launching=False).build_jobs() if j.kind == "fold"]
    unknown = [r for r in runs if r not in folds]
    if unknown or not runs:
        what = "no runs given" if not runs else "no such fold: " + ", ".join(unknown)
        raise ConfigError(f"--runs {','.join(runs)}: {what}; the experiment's folds are "
                          f"{', '.join(folds)} (stages are claimed by whichever console "
                          "first sees their inputs complete)")
    return list(dict.fromkeys(runs))
