"""What a client may ask the supervisor, and how each request is checked and carried out.

Actions are the engine's (console.protocol.model.EngineControl); each answer is the
engine's own sentence, shown by the client as a toast. Queries (a run's epochs, stderr,
checkpoints) are allowed to read-only views. `down` ends supervision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from console.protocol.channel import Request
from console.protocol.codec import encode
from contracts.errors import UserError

if TYPE_CHECKING:
    from console.supervisor.service import Supervisor


def _str(name: str):
    def check(v):
        if not isinstance(v, str):
            raise ValueError(f"{name} must be text")
        return v
    return check


def _bool(name: str):
    def check(v):
        if not isinstance(v, bool):
            raise ValueError(f"{name} must be true or false")
        return v
    return check


def _ints(name: str, optional: bool = False):
    def check(v):
        if v is None and optional:
            return None
        if not isinstance(v, list) or not all(isinstance(i, int) and not isinstance(i, bool)
                                               for i in v):
            raise ValueError(f"{name} must be a list of integers" + (" or null" if optional
                                                                      else ""))
        return v
    return check


def _strs(name: str):
    def check(v):
        if not isinstance(v, list) or not all(isinstance(i, str) for i in v):
            raise ValueError(f"{name} must be a list of names")
        return v
    return check


def _lines(v):
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 2000:
        raise ValueError("lines must be an integer from 1 to 2000")
    return v


# action -> (argument checks, whether it acts, the call)
ACTIONS: dict[str, tuple[dict[str, Callable], bool, Callable]] = {
    "launch": ({"configurations": _strs("configurations"), "folds": _ints("folds"),
                "gpus": _ints("gpus", optional=True)}, True,
               lambda s, a: s.engine.launch(a["configurations"], a["folds"], a.get("gpus"))),
    "stop": ({"key": _str("key"), "final": _bool("final")}, True,
             lambda s, a: s.engine.stop(a["key"], a.get("final", True))),
    "kill": ({"key": _str("key")}, True, lambda s, a: s.engine.kill(a["key"])),
    "resume": ({"key": _str("key")}, True, lambda s, a: s.engine.resume(a["key"])),
    "restart_from_scratch": ({"key": _str("key")}, True,
                             lambda s, a: s.engine.restart_from_scratch(a["key"])),
    "set_watchdog": ({"enabled": _bool("enabled")}, True,
                     lambda s, a: s.engine.set_watchdog(a["enabled"])),
    "select_gpus": ({"gpus": _ints("gpus", optional=True)}, True,
                    lambda s, a: s.engine.select_gpus(a.get("gpus"))),
    "run_stage_now": ({"stage": _str("stage")}, True,
                      lambda s, a: s.engine.run_stage_now(a["stage"])),
    "stop_all": ({"final": _bool("final")}, True,
                 lambda s, a: s.engine.stop_all(a.get("final", True))),
    "down": ({"why": _str("why")}, True, lambda s, a: _down(s, a.get("why"))),
    # foldwatch import: folds put in place in their run folders (issue #20, minimal version)
    "imported": ({"keys": _strs("keys")}, True, lambda s, a: s.engine.imported(a["keys"])),
    "epoch_history": ({"key": _str("key")}, False,
                      lambda s, a: encode(s.engine.epoch_history(a["key"]))),
    "stderr_tail": ({"key": _str("key"), "lines": _lines}, False,
                    lambda s, a: s.engine.stderr_tail(a["key"], a.get("lines", 40))),
    "checkpoints": ({"key": _str("key")}, False,
                    lambda s, a: encode(s.engine.checkpoints(a["key"]))),
}


def _down(sup: "Supervisor", why: str | None) -> str:
    alive = [r.key for r in sup.engine.runs.values() if r.handle is not None]
    sup.ask_down(why or "foldwatch down")
    return (f"supervision ends; {len(alive)} run(s) keep training unsupervised"
            + (f" ({', '.join(alive[:6])}{' …' if len(alive) > 6 else ''})" if alive else "")
            + "; `foldwatch up` resumes supervision and adopts them")


def handle(sup: "Supervisor", req: Request) -> tuple[bool, object, str | None, bool]:
    """(ok, value, error, acted) for one request."""
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
    sup.engine.requester = who if acts else None      # recorded as `by` in its decisions
    try:
        value = call(sup, args)
    except UserError as e:
        return False, None, str(e), acts
    finally:
        sup.engine.requester = None
    return True, value, None, acts
