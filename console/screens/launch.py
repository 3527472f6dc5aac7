"""Launch dialog: configurations x folds x GPUs as checkboxes."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Label

from console.model import Snapshot


@dataclass
class LaunchRequest:
    configurations: list[str]
    folds: list[int]
    gpus: list[int] | None       # None: CPU mode, or leave the GPU selection as it is


def launch_choices(snap: Snapshot) -> tuple[list[str], list[int], list[tuple[int, bool, bool]]]:
    """(configurations, folds, [(gpu index, selected, lost)]) offered by the dialog."""
    configs, folds = [], []
    for r in snap.runs:
        if r.kind == "fold":
            if r.configuration and r.configuration not in configs:
                configs.append(r.configuration)
            if r.fold is not None and r.fold not in folds:
                folds.append(r.fold)
    gpus = [] if snap.cpu_mode else [(g.index, g.selected, g.lost) for g in snap.gpus]
    return configs, sorted(folds), gpus


class LaunchScreen(ModalScreen[LaunchRequest | None]):
    # Enter launches from anywhere in the dialog (a checkbox would take it as a toggle).
    BINDINGS = [Binding("escape", "cancel", "Cancel"),
                Binding("enter", "launch", "Launch", priority=True)]

    def __init__(self, snap: Snapshot) -> None:
        super().__init__()
        self.configs, self.folds, self.gpus = launch_choices(snap)
        self.cpu_slots = snap.cpu_slots

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="launch"):
            yield Label("Launch runs (space toggles, Enter launches, Esc cancels)",
                        classes="question")
            yield Label("Configurations", classes="group")
            with Horizontal(classes="choices"):
                for c in self.configs:
                    yield Checkbox(c, True, id=f"cfg-{c}", classes="cfg", name=c)
            yield Label("Folds", classes="group")
            with Horizontal(classes="choices"):
                for k in self.folds:
                    yield Checkbox(str(k), True, id=f"fold-{k}", classes="fold", name=str(k))
            yield Label("GPUs", classes="group")
            with Horizontal(classes="choices"):
                if not self.gpus:
                    yield Label(f"CPU mode: {self.cpu_slots} slots")
                for i, selected, lost in self.gpus:
                    yield Checkbox(f"gpu{i}" + (" (lost)" if lost else ""), selected and not lost,
                                   id=f"gpu-{i}", classes="gpu", name=str(i), disabled=lost)
            with Horizontal(classes="buttons"):
                yield Button("Launch", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def _checked(self, cls: str) -> list[str]:
        return [str(cb.name) for cb in self.query(f"Checkbox.{cls}") if cb.value]

    def request(self) -> LaunchRequest:
        gpus = [int(x) for x in self._checked("gpu")] if self.gpus else None
        return LaunchRequest(self._checked("cfg"), [int(x) for x in self._checked("fold")], gpus)

    def action_launch(self) -> None:
        if self.focused is not None and self.focused.id == "cancel":
            self.dismiss(None)
            return
        req = self.request()
        if not req.configurations or not req.folds or req.gpus == []:
            self.notify("choose at least one configuration, one fold"
                        + (" and one GPU" if self.gpus else ""), severity="warning")
            return
        self.dismiss(req)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.action_launch()
        else:
            self.dismiss(None)
