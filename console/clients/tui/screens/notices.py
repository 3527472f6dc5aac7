"""Notification history (n): everything the console said, newest first."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

STYLE = {"error": "bold red", "warning": "yellow", "information": ""}


@dataclass
class Notice:
    t: float
    text: str
    severity: str


class NoticesScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,n", "app.pop_screen", "Close")]

    def __init__(self, notices: list[Notice]) -> None:
        super().__init__()
        self.notices = notices

    def compose(self) -> ComposeResult:
        t = Text("Notifications (newest first)\n", style="bold")
        if not self.notices:
            t.append("none yet", style="dim")
        for n in reversed(self.notices):
            t.append(time.strftime("%H:%M:%S ", time.localtime(n.t)), style="dim")
            t.append(n.text + "\n", style=STYLE.get(n.severity, ""))
        with VerticalScroll(classes="dialog", id="notices"):
            yield Static(t)
