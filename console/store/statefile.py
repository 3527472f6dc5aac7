"""console/state.json, a state you can trust: versioned, validated on load, the previous good
copy kept (state.json.prev), and adoption at start-up (docs/console-engine.md, "Persistence").

Load order: state.json if valid; else state.json.prev if valid; else re-discovery from the
run folders (metrics.jsonl and run locks). Each fallback is said loudly (a `state` decision
and a notice in every front end), never silently "empty".
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from console.protocol.model import RUN_STATES
from console.store import faults
from contracts.jsonio import atomic_write_file, dumps, fsync_dir

VERSION = 2
READABLE_VERSIONS = (1, 2)          # version 1: the same records without launch intents


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_RUN_FIELDS = {     # key: (check, expected) -- every field optional, None allowed unless noted
    "state": (lambda v: isinstance(v, str) and v in RUN_STATES,
              f"one of {', '.join(RUN_STATES)}"),
    "wanted": (lambda v: isinstance(v, bool), "true or false"),
    "user_stopped": (lambda v: isinstance(v, bool), "true or false"),
    "run_now": (lambda v: isinstance(v, bool), "true or false"),
    "device": (lambda v: v is None or isinstance(v, str), "a device name or null"),
    "pid": (lambda v: v is None or (_is_int(v) and v >= 0), "a process id or null"),
    "create_time": (lambda v: v is None or _is_num(v), "a number or null"),
    "job_id": (lambda v: v is None or isinstance(v, (str, int)), "a job id or null"),
    "host": (lambda v: v is None or isinstance(v, str), "a host name or null"),
    "restarts": (lambda v: _is_int(v) and v >= 0, "a count (integer >= 0)"),
    "total_restarts": (lambda v: _is_int(v) and v >= 0, "a count (integer >= 0)"),
    "attempts": (lambda v: _is_int(v) and v >= 0, "a count (integer >= 0)"),
    "overrides": (lambda v: isinstance(v, dict) and all(_is_int(x) for x in v.values()),
                  "an object of integers"),
    "message": (lambda v: v is None or isinstance(v, str), "text or null"),
    "backoff_until": (lambda v: v is None or _is_num(v), "a time or null"),
    "wait_for_free": (lambda v: v is None or (_is_int(v) and v >= 0), "bytes or null"),
    "wait_reason": (lambda v: v is None or isinstance(v, str), "text or null"),
    "launch": (lambda v: v is None or (isinstance(v, dict) and _is_int(v.get("attempt"))
                                       and _is_int(v.get("starts"))),
               "null or {attempt, starts, ...}"),
}


def validate(data) -> list[str]:
    """Problems with a decoded state (empty when it can be trusted)."""
    if not isinstance(data, dict):
        return [f"the top level is {type(data).__name__}, expected an object"]
    version = data.get("version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        return [f"unknown version {version!r} (this foldwatch reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}; written by a newer foldwatch?)"]
    runs = data.get("runs")
    if not isinstance(runs, dict):
        return ["'runs' is missing or not an object"]
    problems = []
    if "watchdog_enabled" in data and not isinstance(data["watchdog_enabled"], bool):
        problems.append("'watchdog_enabled' is not true/false")
    sel = data.get("selected_gpus")
    if sel is not None and not (isinstance(sel, list) and all(_is_int(g) for g in sel)):
        problems.append("'selected_gpus' is not a list of GPU indices or null")
    for key, rec in runs.items():
        if not isinstance(rec, dict):
            problems.append(f"run {key!r}: a {type(rec).__name__}, expected an object")
            continue
        for name, (ok, expected) in _RUN_FIELDS.items():
            if name in rec and not ok(rec[name]):
                problems.append(f"run {key!r}: {name} = {rec[name]!r}, expected {expected}")
    return problems


def _read(path: Path) -> tuple[dict | None, str | None]:
    """(state, None) when `path` holds a valid state; (None, why not) otherwise."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, "missing"
    except OSError as e:
        return None, f"unreadable ({e.strerror or e})"
    if not raw.strip():
        return None, "empty"
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not text (binary garbage)"
    except ValueError as e:
        return None, f"not valid JSON ({e.msg} at line {e.lineno}; truncated?)"
    problems = validate(data)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return None, problems[0] + more
    return data, None


@dataclass
class Loaded:
    data: dict                      # a valid state (possibly empty: {"runs": {}})
    source: str                     # "state", "prev", "fresh", "rediscovered"
    notice: str | None = None       # said loudly when not None
    damaged: bool = False           # state.json exists but cannot be trusted
    problems: list[str] = field(default_factory=list)


def empty() -> dict:
    return {"version": VERSION, "runs": {}}


def load_state(path: Path) -> Loaded:
    """The state to trust: state.json, else its previous good copy, else nothing (caller
    re-discovers from the run folders). Reads only."""
    path = Path(path)
    prev = prev_path(path)
    data, why = _read(path)
    if data is not None:
        return Loaded(data, "state")
    pdata, pwhy = _read(prev)
    if why == "missing":
        if pdata is not None:        # killed between rotating and writing, or deleted
            return Loaded(pdata, "prev", f"{path.name} is missing; using its previous copy "
                          f"{prev.name}")
        return Loaded(empty(), "fresh")
    if pdata is not None:
        return Loaded(pdata, "prev", f"{path} is damaged ({why}); using the previous good "
                      f"copy {prev.name}", damaged=True, problems=[why])
    return Loaded(empty(), "rediscovered",
                  f"{path} is damaged ({why}) and so is {prev.name} ({pwhy}); the runs were "
                  "re-discovered from their folders (metrics.jsonl, run locks)",
                  damaged=True, problems=[why, pwhy])


def prev_path(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


class StateFile:
    """Writes state.json atomically (fsync'd) when its content changed, keeping the previous
    good copy as state.json.prev. A failed write raises OSError and is retried next save."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.prev = prev_path(self.path)
        self._last: str | None = None
        self._ours = False            # state.json on disk is one we wrote (so: good)

    def trust_current(self) -> None:
        """The state.json on disk was loaded and validated: good enough to keep as prev."""
        self._ours = True

    def set_aside_damaged(self) -> Path | None:
        """Rename a damaged state.json to state.json.damaged-<stamp> (kept for inspection)."""
        if not self.path.exists():
            return None
        target = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(self.path, target)
        return target

    def save(self, data: dict) -> bool:
        text = dumps(data, indent=1)
        if text == self._last:
            return False
        faults.point("write:state")
        if self._ours:
            self._rotate()
        faults.point("save:prev")

        def write(f) -> None:
            f.write((text + "\n").encode("utf-8"))
            f.flush()
            faults.point("save:written")

        atomic_write_file(self.path, write)
        faults.point("save:replaced")
        self._last, self._ours = text, True
        return True

    def _rotate(self) -> None:
        """state.json -> state.json.prev without a moment where state.json is missing."""
        tmp = self.prev.with_name(f".{self.prev.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            os.link(self.path, tmp)
        except FileNotFoundError:
            return
        except OSError:               # no hard links here: copy instead
            try:
                tmp.write_bytes(self.path.read_bytes())
            except OSError:
                _unlink(tmp)
                raise
        os.replace(tmp, self.prev)
        fsync_dir(self.path.parent)


def _unlink(p: Path) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass
