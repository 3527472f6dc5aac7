""""Run X now": X and the inputs it still waits for go ahead of the other queued runs."""

from __future__ import annotations

from typing import Iterable


def boosted(runs: dict, depends_on) -> set[str]:
    """Keys of runs wanted now (run_now) and everything they still wait for, transitively.

    `depends_on(key)` gives a run's direct inputs.
    """
    out: set[str] = set()
    stack = [k for k, r in runs.items() if getattr(r, "run_now", False) and r.state != "completed"]
    while stack:
        k = stack.pop()
        if k in out or k not in runs or runs[k].state == "completed":
            continue
        out.add(k)
        stack.extend(depends_on(k))
    return out


def in_priority(ready: Iterable, boost: set[str]) -> list:
    """The ready runs, boosted ones first; otherwise the experiment's order (stable)."""
    return sorted(ready, key=lambda r: r.key not in boost)


def run_now(eng, stage: str) -> str:
    """The engine's "run X now": mark the wish (persisted at once) or say why not."""
    from console.engine import scheduling
    from console.engine.runstate import RunState as S
    run = eng.runs.get(stage)
    if run is None or run.job.kind != "stage":
        return f"{stage}: no such stage in this experiment"
    if run.handle is not None:
        return f"{stage} is running already"
    dead = scheduling.dead_end(eng, run)
    if dead:
        d = eng.runs[dead]
        why = d.state.value if d.wanted else "not launched"
        return (f"{stage} cannot run: its input {dead} is {why} and will not complete; "
                "resume it first (r). Nothing started")
    run.wanted, run.run_now, run.state, run.message = True, True, S.QUEUED, None
    run.restarts, run.user_stopped = 0, False
    eng.decide(run, "queue", "run now (by the user)")
    eng.save_state()                   # the wish outlives this console from now on
    waiting = scheduling.blocker(eng, run)
    return (f"{stage} goes ahead of the queued runs: " + (
        f"it starts once {waiting} and its other inputs are complete" if waiting else
        "it starts as soon as a slot is free"))
