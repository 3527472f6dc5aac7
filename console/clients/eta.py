"""The whole experiment's ETA for the header: the fold work left, spread over the slots."""

from __future__ import annotations

from console.protocol.model import ACTIVE_STATES, Snapshot


def experiment_eta_s(snap: Snapshot) -> float | None:
    """Seconds until every wanted fold is trained, or None before any epoch time is known.

    A queued fold is assumed to take as long per epoch as its configuration's folds so far;
    the work is divided by the runs training in parallel now (at least one).
    """
    per_epoch: dict[str, list[float]] = {}
    for r in snap.runs:
        if r.kind != "fold" or not r.epochs:
            continue
        t = r.epoch_s
        if t is None and r.eta_s and r.state in ACTIVE_STATES and r.epochs > (r.epoch or 0):
            t = r.eta_s / (r.epochs - (r.epoch or 0))
        if t:
            per_epoch.setdefault(r.configuration or "", []).append(t)
    if not per_epoch:
        return None
    every = [t for ts in per_epoch.values() for t in ts]
    work = 0.0
    for r in snap.runs:
        if r.kind != "fold" or r.state in ("completed", "failed", "stopped"):
            continue
        ts = per_epoch.get(r.configuration or "") or every
        epochs = r.epochs or max((x.epochs or 0 for x in snap.runs if x.kind == "fold"), default=0)
        work += max(0, epochs - (r.epoch or 0)) * sum(ts) / len(ts)
    parallel = max(1, sum(1 for r in snap.runs if r.kind == "fold" and r.state in ACTIVE_STATES))
    return work / parallel
