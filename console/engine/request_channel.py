"""console/requests.jsonl: how `foldwatch stop` in another shell asks the controlling
console to act (appended lines; the console reads what arrived since it started)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from console.store import disk, faults
from console.store.tailer import Tailer
from contracts.errors import UserError
from contracts.jsonio import EventWriter

if TYPE_CHECKING:
    from console.engine.core import Engine


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
    path = requests_path(layout)
    try:
        faults.point("write:requests")
        with EventWriter(path) as w:
            w.write("request", action=action, run=run)
    except OSError as e:
        extra = f" ({disk.free_text(layout.root)})" if disk.is_no_space(e) else ""
        raise UserError(f"cannot ask the controlling console: writing {path} failed: "
                        f"{e.strerror or e}{extra}. Free some space and try again.") from None
