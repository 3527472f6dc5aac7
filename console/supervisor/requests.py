"""What a client may ask the supervisor, and how each request is checked and carried out.

Actions are the engine's (console.protocol.model.EngineControl); each answer is the
engine's own sentence, shown by the client as a toast. Queries (a run's epochs, stderr,
checkpoints) are allowed to read-only views. `down` ends supervision.
"""

from __future__ import annotations

from typing import Callable

from console.engine.core import Engine
from console.protocol.channel import Request
from console.protocol.codec import encode
from contracts.errors import UserError


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check(name: str, ok: Callable[[object], bool], what: str, optional: bool = False):
    """An argument check: the value when `ok(value)` (or None when optional), else
    ValueError saying what `name` must be."""
    def check(v):
        if (v is None and optional) or ok(v):
            return v
        raise ValueError(f"{name} must be {what}" + (" or null" if optional else ""))
    return check


def _str(name: str):
    return _check(name, lambda v: isinstance(v, str), "text")


def _bool(name: str):
    return _check(name, lambda v: isinstance(v, bool), "true or false")


def _ints(name: str, optional: bool = False):
    return _check(name, lambda v: isinstance(v, list) and all(map(_int, v)),
                  "a list of integers", optional)


def _strs(name: str):
    return _check(name, lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
                  "a list of names")


_lines = _check("lines", lambda v: _int(v) and 1 <= v <= 2000, "an integer from 1 to 2000")


# action -> (argument checks, whether it acts, the call)
ACTIONS: dict[str, tuple[dict[str, Callable], bool, Callable]] = {
    "launch": ({"configurations": _strs("configurations"), "folds": _ints("folds"),
                "gpus": _ints("gpus", optional=True)}, True,
               lambda e, a: e.launch(a["configurations"], a["folds"], a.get("gpus"))),
    "stop": ({"key": _str("key"), "final": _bool("final")}, True,
             lambda e, a: e.stop(a["key"], a.get("final", True))),
    "kill": ({"key": _str("key")}, True, lambda e, a: e.kill(a["key"])),
    "resume": ({"key": _str("key")}, True, lambda e, a: e.resume(a["key"])),
    "restart_from_scratch": ({"key": _str("key")}, True,
                             lambda e, a: e.restart_from_scratch(a["key"])),
    "set_watchdog": ({"enabled": _bool("enabled")}, True,
                     lambda e, a: e.set_watchdog(a["enabled"])),
    "select_gpus": ({"gpus": _ints("gpus", optional=True)}, True,
                    lambda e, a: e.select_gpus(a.get("gpus"))),
    "run_stage_now": ({"stage": _str("stage")}, True,
                      lambda e, a: e.run_stage_now(a["stage"])),
    "stop_all": ({"final": _bool("final")}, True,
                 lambda e, a: e.stop_all(a.get("final", True))),
    "down": ({"why": _str("why")}, True, None),      # ends supervision (handle() below)
    # foldwatch import: completed folds just put in place in their run folders
    "imported": ({"keys": _strs("keys")}, True, lambda e, a: e.imported(a["keys"])),
    "epoch_history": ({"key": _str("key")}, False,
                      lambda e, a: encode(e.epoch_history(a["key"]))),
    "stderr_tail": ({"key": _str("key"), "lines": _lines}, False,
                    lambda e, a: e.stderr_tail(a["key"], a.get("lines", 40))),
    "checkpoints": ({"key": _str("key")}, False,
                    lambda e, a: encode(e.checkpoints(a["key"]))),
}


def _down(engine: Engine, why: str | None, ask_down: Callable[[str], None]) -> str:
    alive = [r.key for r in engine.runs.alive()]
    ask_down(why or "foldwatch down")
    return (f"supervision ends; {len(alive)} run(s) keep training unsupervised"
            + (f" ({', '.join(alive[:6])}{' …' if len(alive) > 6 else ''})" if alive else "")
            + "; `foldwatch up` resumes supervision and adopts them")


def handle(engine: Engine, req: Request, ask_down: Callable[[str], None]
           ) -> tuple[bool, object, str | None, bool]:
    """(ok, value, error, acted) for one request; `down` calls `ask_down(why)`."""
    spec = ACTIONS.get(req.action)
    if spec is None:
        return False, None, (f"unknown request {req.action!r} (this supervisor answers "
                             f"{', '.join(sorted(ACTIONS))}; a client of another version?)"), False
    checks, acts, call = spec
    if acts and req.read_only:
        return False, None, "this view is read-only (--read-only): it cannot act", False
    args = {}
    try:
        for name, value in req.args.items():
            if name not in checks:
                raise ValueError(f"unknown argument {name!r}")
            args[name] = checks[name](value)
    except ValueError as e:
        return False, None, f"{req.action}: {e}", False
    who = str(req.client.get("kind") or "a client")
    if req.client.get("host"):
        who += f" on {req.client['host']}"
    engine.requester = who if acts else None      # recorded as `by` in its decisions
    try:
        value = (_down(engine, args.get("why"), ask_down) if call is None
                 else call(engine, args))
    except UserError as e:
        return False, None, str(e), acts
    finally:
        engine.requester = None
    return True, value, None, acts
