"""console/requests.jsonl: how `foldwatch stop` in another shell asks the controlling
console to act (appended lines; the console reads what arrived since it started)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from console.tailer import Tailer
from contracts.jsonio import EventWriter

if TYPE_CHECKING:
    from console.engine import Engine


def requests_path(layout):
    return layout.console_dir / "requests.jsonl"


class RequestChannel:
    """The controlling console's end: skips requests older consoles already handled."""

    def __init__(self, layout) -> None:
        self._tail = Tailer(requests_path(layout))
        self._tail.read()

    def handle(self, eng: "Engine") -> None:
        for ev in self._tail.read():
            if ev.get("event") != "request":
                continue
            action, key = ev.get("action"), ev.get("run")
            if action == "stop_all":
                eng.decide(None, "request", "stop all (foldwatch stop)")
                eng.stop_all()
            elif action == "stop" and key in eng.runs:
                eng.decide(eng.runs[key], "request", "stop (foldwatch stop)")
                eng.stop(key)


def send_request(layout, action: str, run: str | None = None) -> None:
    """Ask the controlling console to do something (used by `foldwatch stop`)."""
    with EventWriter(requests_path(layout)) as w:
        w.write("request", action=action, run=run)
