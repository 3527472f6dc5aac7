"""Notifications for what changed between two snapshots (restarts, failures, completions)."""

from __future__ import annotations

from console.model import ACTIVE_STATES, Snapshot


def describe_changes(old: Snapshot | None, new: Snapshot) -> list[tuple[str, str]]:
    """Notifications (message, severity) for restarts, failures and completions."""
    if old is None:
        return []
    before = {r.key: r for r in old.runs}
    out = []
    for r in new.runs:
        prev = before.get(r.key)
        if prev is None:
            continue
        why = f": {r.message}" if r.message else ""
        if r.restarts > prev.restarts:      # the watchdog decided; the restart comes later
            out.append((f"{r.label} exited{why}; the watchdog restarts it after a backoff",
                        "warning"))
        if r.state != prev.state and prev.state == "backoff" and r.state in ("starting", "running"):
            out.append((f"{r.label} restarted (attempt {r.restarts})", "information"))
        if r.state != prev.state:
            if r.state == "completed":
                out.append((f"{r.label} completed", "information"))
            elif r.state == "failed":
                out.append((f"{r.label} failed{why}", "error"))
            elif r.state == "stalled":
                out.append((f"{r.label} stalled{why}", "warning"))
            elif r.state == "stopped" and prev.state in ACTIVE_STATES:
                out.append((f"{r.label} stopped{why}", "information"))
    for d in new.decisions:
        if d.action == "request" and d.t > (old.decisions[-1].t if old.decisions else 0.0):
            out.append((f"{'stop ' + d.run_key if d.run_key else 'stop all'} requested from "
                        f"another shell ({d.reason})", "warning"))
    if new.finished and not old.finished:
        out.append(("pipeline finished: " + ("everything completed" if new.succeeded
                                             else "some runs did not complete"),
                    "information" if new.succeeded else "warning"))
    return out
