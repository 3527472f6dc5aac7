"""Fault injection for the crash-safety tests: named points in the launch and save paths.

`FOLDWATCH_CRASH_AT=launch:submitted:2` makes a console `os._exit(CRASH_EXIT)` the 2nd time it
passes the point `launch:submitted` (a console killed at exactly that instruction);
`arm(label, exc, nth)` raises `exc` there instead (in-process tests, e.g. OSError(ENOSPC)).
Without either, a point costs one dict lookup.
"""

from __future__ import annotations

import os
from collections import Counter

CRASH_EXIT = 86
POINTS = ("launch:intent", "launch:intent-saved", "launch:submitted", "launch:recorded",
          "save:prev", "save:written", "save:replaced", "write:state", "write:events",
          "write:requests", "import:staged", "import:journal", "import:aside", "import:placed")

_hits: Counter = Counter()
_armed: dict[str, tuple[BaseException, int, int]] = {}


def _crash_spec() -> tuple[str, int] | None:
    spec = os.environ.get("FOLDWATCH_CRASH_AT")
    if not spec:
        return None
    label, _, n = spec.rpartition(":")
    if not n.isdigit():
        return spec, 1
    return label, int(n)


def arm(label: str, exc: BaseException, nth: int = 1, times: int = 1) -> None:
    """Raise `exc` at the `nth` pass of `label` (and the `times - 1` passes after it)."""
    _hits[label] = 0
    _armed[label] = (exc, nth, nth + times - 1)


def disarm() -> None:
    _armed.clear()
    _hits.clear()


def point(label: str) -> None:
    """A place where a console may die (or fail) in the tests."""
    spec = _crash_spec()
    if spec is None and not _armed:
        return
    _hits[label] += 1
    if spec is not None and spec[0] == label and _hits[label] == spec[1]:
        os._exit(CRASH_EXIT)
    armed = _armed.get(label)
    if armed is not None and armed[1] <= _hits[label] <= armed[2]:
        raise armed[0]
