"""The team split in the engine's tick (docs/slurm.md): others' runs are read from their
files, and a pipeline stage is claimed by the first console that sees its inputs complete."""

from __future__ import annotations

from typing import TYPE_CHECKING

from console.claims import foreign_state
from console.runstate import RunState as S

if TYPE_CHECKING:
    from console.engine import Engine


def foreign(eng: "Engine", key: str) -> bool:
    """Another console's run, or a stage this console has not claimed (yet)."""
    return eng.claims is not None and not eng.claims.holds(key)


def refresh(eng: "Engine", run, now: float) -> None:
    """A foreign run's state and message from its metrics.jsonl, run.lock and claim."""
    state, message = foreign_state(run, eng.layout, now, eng.exp.watchdog.stall_timeout_s)
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
