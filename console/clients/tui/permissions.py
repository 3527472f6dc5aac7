"""Why an action cannot run for the selected row right now (None: it can).

The app disables such actions in the palette and footer (check_action) and, when the key is
pressed anyway, says this reason instead of doing nothing silently.
"""

from __future__ import annotations

from console.protocol.model import ACTIVE_STATES, RunView, Snapshot

STAGE_OF = {"crossval": "crossval-", "find_best": "find-best", "predict": "predict"}


def stage_keys(snap: Snapshot, action: str, selected: RunView | None) -> list[str]:
    """The stage rows an e/b/p press means (crossval: the selected row's configuration)."""
    stages = [r for r in snap.runs if r.kind == "stage"]
    if action == "crossval":
        keys = [r.key for r in stages if r.key.startswith("crossval-")]
        if selected and selected.configuration and f"crossval-{selected.configuration}" in keys:
            return [f"crossval-{selected.configuration}"]
        return keys
    return [r.key for r in stages if r.key == STAGE_OF[action]]


def dead_inputs(snap: Snapshot, key: str) -> list[str]:
    """Inputs of `key` (transitively) that will not complete without the user."""
    runs = {r.key: r for r in snap.runs}
    out: list[str] = []
    seen: set[str] = set()

    def walk(k: str) -> None:
        for dep in runs[k].depends_on if k in runs else ():
            if dep in seen or dep not in runs:
                continue
            seen.add(dep)
            d = runs[dep]
            if d.state == "completed":
                continue
            if d.state in ("failed", "stopped"):
                out.append(f"{dep} ({d.state})")
            else:
                walk(dep)
    walk(key)
    return out


def why_not(action: str, snap: Snapshot | None, run: RunView | None, *,
            read_only: bool, changing: frozenset, on_row: frozenset) -> str | None:
    if action in changing and read_only:
        return "read-only: this view only watches (opened with --read-only)"
    if snap is None:
        return "waiting for the engine's first snapshot" if action in changing | on_row else None
    if action in on_row and run is None:
        return "select a run first"
    if action == "stop" and run.state not in ACTIVE_STATES | {"queued", "backoff", "waiting"}:
        return f"{run.label} is {run.state}: nothing to stop"
    if action == "kill" and run.state not in ACTIVE_STATES:
        return f"{run.label} is {run.state}: no process to kill"
    if action == "resume":
        if run.state in ACTIVE_STATES or run.state in ("queued", "backoff", "waiting"):
            return f"{run.label} is {run.state} already"
        if run.state == "completed":
            return f"{run.label} is completed; x restarts it from scratch"
    if action in STAGE_OF:
        keys = stage_keys(snap, action, run)
        if not keys:
            return "this experiment has no such stage (see pipeline: in the experiment file)"
        busy = [k for k in keys if next(r for r in snap.runs if r.key == k).state in ACTIVE_STATES]
        if busy and len(busy) == len(keys):
            return f"{', '.join(busy)} is running already"
        dead = [d for k in keys for d in dead_inputs(snap, k)]
        if dead:
            return (f"{', '.join(keys)} cannot run: its inputs {', '.join(dead)} will not "
                    "complete; resume them first (r). Nothing started")
    return None
