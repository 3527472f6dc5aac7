"""Launch dialog: configurations x folds x GPUs as checkboxes."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Label, Static

from console.protocol.model import Snapshot


@dataclass
class LaunchRequest:
    configurations: list[str]
    folds: list[int]
    gpus: list[int] | None       # None: CPU mode, or leave the GPU selection as it is
    adds: list[str] = field(default_factory=list)   # runs this request queues that were not

    @property
    def summary(self) -> str:
        if not self.adds:
            return "nothing new to launch: every chosen run is done, running or queued already"
        return f"queued {len(self.adds)} runs: {', '.join(self.adds[:8])}" + \
            (" …" if len(self.adds) > 8 else "")


class Tick(Checkbox):
    """A checkbox whose mark is empty when off, so on and off differ without colour too."""

    @property
    def BUTTON_INNER(self) -> str:          # noqa: N802  (Textual's class attribute name)
        return "X" if self.value else " "


PENDING = ("queued", "starting", "running", "stalled", "backoff", "completed")


def what_it_adds(snap: Snapshot, configurations: list[str], folds: list[int]) -> list[str]:
    """The fold runs a launch would really queue (the rest is done or on its way)."""
    return [r.key for r in snap.runs if r.kind == "fold" and r.configuration in configurations
            and r.fold in folds and r.state not in PENDING]


def run_marks(snap: Snapshot) -> dict[tuple[str, int], str]:
    """(configuration, fold) -> state, for the dialog's overview."""
    return {(r.configuration, r.fold): r.state for r in snap.runs
            if r.kind == "fold" and r.configuration is not None and r.fold is not None}


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
    BINDINGS = [Binding("escape,q", "cancel", "Cancel"),
                Binding("enter", "launch", "Launch", priority=True)]

    def __init__(self, snap: Snapshot) -> None:
        super().__init__()
        self.configs, self.folds, self.gpus = launch_choices(snap)
        self.cpu_slots = snap.cpu_slots
        self.snap = snap
        marks = run_marks(snap)
        # Pre-ticked: only what is not done or on its way already.
        self.open_configs = {c for c in self.configs
                             if any(marks.get((c, k)) not in PENDING for k in self.folds)}
        self.open_folds = {k for k in self.folds
                           if any(marks.get((c, k)) not in PENDING for c in self.configs)}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="launch"):
            yield Label("Launch runs (space toggles, Enter launches, Esc cancels)",
                        classes="question")
            yield Static(self.overview(), id="launch-overview", markup=False)
            yield Label("Configurations", classes="group")
            with Horizontal(classes="choices"):
                for c in self.configs:
                    yield Tick(c, c in self.open_configs, id=f"cfg-{c}", classes="cfg", name=c)
            yield Label("Folds", classes="group")
            with Horizontal(classes="choices"):
                for k in self.folds:
                    yield Tick(str(k), k in self.open_folds, id=f"fold-{k}", classes="fold", name=str(k))
            yield Label("GPUs", classes="group")
            with Horizontal(classes="choices"):
                if not self.gpus:
                    yield Label(f"CPU mode: {self.cpu_slots} slots")
                for i, selected, lost in self.gpus:
                    yield Tick(f"gpu{i}" + (" (lost)" if lost else ""), selected and not lost,
                                   id=f"gpu-{i}", classes="gpu", name=str(i), disabled=lost)
            yield Static(id="launch-adds", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Launch", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self._show_adds()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self._show_adds()

    def _show_adds(self) -> None:
        """What Enter would really add, kept up to date as boxes are ticked."""
        adds = self.request().adds
        self.query_one("#launch-adds", Static).update(
            f"Enter queues: {', '.join(adds)}" if adds else
            "Enter queues nothing new: the chosen runs are done, running or queued")

    def overview(self) -> str:
        """Per configuration, what each fold is doing now (so a launch adds, knowingly)."""
        marks = run_marks(self.snap)
        short = {"completed": "done", "running": "run", "starting": "run", "stalled": "run",
                 "backoff": "run", "queued": "queued"}
        lines = []
        for c in self.configs:
            cells = [f"{k}:{short.get(marks.get((c, k)) or '-', marks.get((c, k)) or '-')}" for k in self.folds]
            lines.append(f"{c:<12} " + "  ".join(cells))
        return "\n".join(lines)

    def _checked(self, cls: str) -> list[str]:
        return [str(cb.name) for cb in self.query(f"Checkbox.{cls}") if cb.value]

    def request(self) -> LaunchRequest:
        gpus = [int(x) for x in self._checked("gpu")] if self.gpus else None
        configs, folds = self._checked("cfg"), [int(x) for x in self._checked("fold")]
        return LaunchRequest(configs, folds, gpus, what_it_adds(self.snap, configs, folds))

    def action_launch(self) -> None:
        if self.focused is not None and self.focused.id == "cancel":
            self.dismiss(None)
            return
        req = self.request()
        if not req.configurations or not req.folds or req.gpus == []:
            self.notify("choose at least one configuration, one fold"
                        + (" and one GPU" if self.gpus else ""), severity="warning")
            return
        if not req.adds and req.gpus is None:
            self.notify(req.summary, severity="warning")
            return
        self.dismiss(req)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.action_launch()
        else:
            self.dismiss(None)
