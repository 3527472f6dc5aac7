""""Run X now": X and the inputs it still waits for go ahead of the other queued runs."""

from __future__ import annotations

from typing import Iterable, Protocol


class _Run(Protocol):
    state: str
    run_now: bool

    @property
    def key(self) -> str: ...


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
