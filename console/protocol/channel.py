"""Requests from clients to the supervisor and its answers: one small file each.

A client writes `requests/<id>.json` (atomically: a reader never sees half a request); the
supervisor carries requests out in the order of their ids, writes `replies/<id>.json`, then
removes the request. A request whose reply exists already was carried out by a supervisor
killed before it removed the request: it is removed, not carried out twice. Plain files work
where the results folder is shared between hosts (a laptop watching a cluster filesystem),
and need no port. Latency is the supervisor's request poll (0.1 s) plus the client's reply
poll (0.05 s) on one host; over NFS add the client's attribute cache (actimeo).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from contracts.jsonio import atomic_write_json

REPLY_KEEP_S = 600.0            # replies nobody collected (the client died) are swept after
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_counter = itertools.count()


@dataclass
class Request:
    id: str
    action: str                          # an EngineControl method, a query, or "down"
    args: dict = field(default_factory=dict)
    client: dict = field(default_factory=dict)   # pid, host, kind (tui, status, web, ...)
    read_only: bool = False              # a view that must not act (--read-only)
    t: float = 0.0


@dataclass
class Reply:
    id: str
    ok: bool
    value: object = None                 # an action's sentence, or a query's data
    error: str | None = None             # why it was refused (ok False)
    t: float = 0.0


def new_id() -> str:
    """Ids sort in the order requests were made (then by host, pid, counter)."""
    host = _SAFE.sub("_", socket.gethostname())[:40]
    return f"{time.time_ns():020d}-{host}-{os.getpid()}-{next(_counter)}"


def send(requests: Path, action: str, args: dict | None = None, *, client: dict | None = None,
         read_only: bool = False) -> str:
    """Write one request; its id. OSError (no space, no permission) is the caller's to say."""
    rid = new_id()
    requests.mkdir(parents=True, exist_ok=True)
    atomic_write_json(requests / f"{rid}.json",
                      {"id": rid, "action": action, "args": args or {}, "client": client or {},
                       "read_only": read_only, "t": time.time()}, indent=None)
    return rid


def _load(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def wait_reply(replies: Path, rid: str, timeout_s: float, *,
               still_listening: Callable[[], bool] = lambda: True,
               every_s: float = 0.05) -> Reply | None:
    """The reply to `rid` (collected: its file is removed), or None when none came within
    `timeout_s` or the supervisor stopped listening."""
    path = replies / f"{rid}.json"
    deadline = time.monotonic() + timeout_s
    checked = time.monotonic()
    while True:
        data = _load(path)
        if data:
            try:
                os.unlink(path)
            except OSError:
                pass
            return Reply(id=rid, ok=bool(data.get("ok")), value=data.get("value"),
                         error=data.get("error"), t=float(data.get("t") or 0.0))
        now = time.monotonic()
        if now >= deadline:
            return None
        if now - checked >= 1.0:           # a dead supervisor: stop waiting early
            checked = now
            if not still_listening():
                return None
        time.sleep(every_s)


class Inbox:
    """The supervisor's end of the channel."""

    def __init__(self, requests: Path, replies: Path) -> None:
        self.requests, self.replies = Path(requests), Path(replies)
        self._swept = 0.0

    def pending(self) -> list[Request]:
        """Requests waiting, oldest first; unreadable ones are answered with the reason."""
        try:
            names = sorted(e.name for e in os.scandir(self.requests)
                           if e.name.endswith(".json") and not e.name.startswith("."))
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            rid = name[:-len(".json")]
            path = self.requests / name
            if (self.replies / name).exists():       # carried out before a crash: not twice
                self._remove(path)
                continue
            data = _load(path)
            if data is None:
                continue
            if not data or not isinstance(data.get("action"), str):
                self.answer(Request(rid, "?"), ok=False,
                            error=f"unreadable request {path.name}: not a JSON request object")
                continue
            args = data.get("args") if isinstance(data.get("args"), dict) else {}
            client = data.get("client") if isinstance(data.get("client"), dict) else {}
            out.append(Request(rid, data["action"], args, client, bool(data.get("read_only")),
                               float(data.get("t") or 0.0)))
        return out

    def answer(self, req: Request, *, ok: bool, value: object = None,
               error: str | None = None) -> None:
        """The reply first, then the request goes: a crash in between cannot repeat it."""
        self.replies.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.replies / f"{req.id}.json",
                          {"id": req.id, "ok": ok, "value": value, "error": error,
                           "t": time.time()}, indent=None)
        self._remove(self.requests / f"{req.id}.json")

    def sweep(self, now: float | None = None) -> None:
        """Replies nobody collected for REPLY_KEEP_S go (at most once a minute)."""
        now = time.time() if now is None else now
        if now - self._swept < 60.0:
            return
        self._swept = now
        try:
            entries = list(os.scandir(self.replies))
        except FileNotFoundError:
            return
        for e in entries:
            try:
                if now - e.stat().st_mtime > REPLY_KEEP_S:
                    os.unlink(e.path)
            except OSError:
                continue

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
