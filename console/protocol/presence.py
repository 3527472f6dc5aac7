"""Is an experiment supervised right now? What every client asks before it shows or acts.

The supervisor holds an flock on `supervisor.lock` for its whole life (its holder record:
pid, create_time, host, started) and rewrites `snapshot.json` on every tick (the heartbeat).
`supervision.json` says whether supervision is wanted: `foldwatch up` wants it, `foldwatch
down` and a finished experiment's linger do not. A supervisor that is gone while wanted was
killed (or its machine was): any foldwatch command on the same host starts it again.
"""

from __future__ import annotations

import getpass
import json
import socket
import time
from dataclasses import dataclass

from contracts.jsonio import atomic_write_json
from contracts.layout import SupervisorHome
from contracts.runlock import probe

STALE_S = 30.0       # no heartbeat for this long while the lock is held: not responding
STARTING_S = 60.0    # a fresh holder may take this long before its first snapshot


@dataclass
class Presence:
    """What a client knows about the supervisor."""
    state: str                    # "alive", "starting", "not responding", "down", "never"
    pid: int | None = None
    host: str | None = None
    create_time: float | None = None
    started: float | None = None
    since: float | None = None    # down or silent since (wall time)
    reason: str | None = None     # why it ended, when it said so

    @property
    def alive(self) -> bool:
        return self.state in ("alive", "starting")

    @property
    def here(self) -> bool:
        """It ran (or runs) on this host."""
        return self.host in (None, socket.gethostname())


def heartbeat_of(home: SupervisorHome) -> tuple[dict | None, float | None]:
    """(the supervisor section of snapshot.json, the file's modification time)."""
    try:
        st = home.snapshot.stat()
        data = json.loads(home.snapshot.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    sup = data.get("supervisor") if isinstance(data, dict) else None
    return (sup if isinstance(sup, dict) else None), st.st_mtime


def presence(home: SupervisorHome, *, supervisor: dict | None = None,
             written: float | None = None, now: float | None = None) -> Presence:
    """Judge the supervisor from its lock and heartbeat (pass what the caller has read of
    snapshot.json, or it is read here)."""
    now = time.time() if now is None else now
    holder = probe(home.lock)
    if supervisor is None and written is None:
        supervisor, written = heartbeat_of(home)
    sup = supervisor or {}
    beat = sup.get("heartbeat") if isinstance(sup.get("heartbeat"), (int, float)) else written
    if holder is not None:
        pid = holder.get("pid") if isinstance(holder.get("pid"), int) else None
        same = pid is not None and sup.get("pid") == pid
        started = holder.get("started") if isinstance(holder.get("started"), (int, float)) else None
        p = Presence("alive", pid, holder.get("host"), holder.get("create_time"), started)
        if not same or beat is None:            # its first tick is still to come
            fresh = started is None or now - started < STARTING_S
            p.state, p.since = ("starting", None) if fresh else ("not responding", started)
        elif now - beat > STALE_S:
            p.state, p.since = "not responding", beat
        return p
    if not sup and written is None:
        return Presence("never")
    return Presence("down", sup.get("pid"), sup.get("host"), sup.get("create_time"),
                    sup.get("started"), since=sup.get("ended") or beat,
                    reason=sup.get("end_reason"))


# -- is supervision wanted ----------------------------------------------------------------
def read_intent(home: SupervisorHome) -> dict:
    """{wanted, by, host, user, t, reason}; {} when never written."""
    try:
        data = json.loads(home.intent.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_intent(home: SupervisorHome, wanted: bool, by: str, reason: str) -> None:
    """Say whether supervision is wanted (atomically; the next command acts on it)."""
    home.dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(home.intent, {"wanted": wanted, "by": by, "reason": reason,
                                    "host": socket.gethostname(), "user": _user(),
                                    "t": time.time()})


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "?"


def restart_due(p: Presence, intent: dict) -> bool:
    """Gone (or hung) although wanted, and it was ours to run: start it again here."""
    return (p.state in ("down", "not responding") and bool(intent.get("wanted"))
            and p.here)


def describe(p: Presence, intent: dict | None = None) -> str:
    """One line for people: who supervises, or since when nobody does and what to do."""
    where = f" on {p.host}" if p.host and not p.here else ""
    if p.state == "alive":
        return f"supervised by pid {p.pid}{where}"
    if p.state == "starting":
        return f"supervisor pid {p.pid}{where} is starting"
    since = time.strftime("%H:%M", time.localtime(p.since)) if p.since else None
    if p.state == "not responding":
        return (f"the supervisor (pid {p.pid}{where}) has not ticked since {since or '?'}: "
                "runs are not watched; `foldwatch down` then `foldwatch up` restarts it")
    if p.state == "never":
        return ("not supervised: no supervisor has run this experiment yet; "
                "`foldwatch up` starts one")
    why = ""
    if intent and intent.get("wanted") is False and intent.get("reason"):
        why = f" ({intent['reason']})"
    elif p.reason:
        why = f" ({p.reason})"
    if not p.here:
        return (f"not supervised since {since or '?'}{why}; it ran on {p.host}: runs are not "
                f"watched, queued runs will not start; `foldwatch up` on {p.host} resumes")
    return (f"not supervised since {since or '?'}{why}: runs are not watched, queued runs "
            "will not start; `foldwatch up` resumes")
