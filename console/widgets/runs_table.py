"""The runs table: keyed rows updated in place, one batch per snapshot."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from console.model import RunView
from console.widgets.fmt import bar, duration, num

# Most wanted first: at 80 columns everything up to Loss is visible, the rest scrolls.
COLUMNS = [("config", "Config"), ("fold", "Fold/stage"), ("state", "State"), ("device", "Dev"),
           ("epoch", "Epoch"), ("dice", "Dice"), ("best", "Best"), ("loss", "Loss"),
           ("speed", "smp/s"), ("eta", "ETA"), ("restarts", "Rst"), ("age", "Last"), ("note", "Note")]
STAGE_NAMES = ("plan", "preprocess", "crossval", "find-best", "predict")

STATE_STYLE = {"queued": "dim", "starting": "cyan", "running": "green", "stalled": "bold yellow",
               "backoff": "yellow", "completed": "bold blue", "failed": "bold red",
               "stopped": "magenta"}


def row_cells(r: RunView) -> dict[str, object]:
    """Cell values for one run, keyed by column."""
    if r.kind == "fold":
        config, fold = r.configuration or r.label, "" if r.fold is None else str(r.fold)
    else:
        stage = next((s for s in STAGE_NAMES if r.key.startswith(s)), r.label)
        config, fold = r.configuration or "-", stage
    if r.epochs:
        done = r.epoch or 0
        epoch, frac = f"{done}/{r.epochs}", done / r.epochs
    elif r.progress:
        d, total = r.progress
        epoch, frac = f"{d}/{total}", (d / total if total else None)
    else:
        epoch, frac = "-", None
    if r.state == "completed":
        frac = 1.0
    return {
        "config": config, "fold": fold,
        "state": Text(r.state, style=STATE_STYLE.get(r.state, "")),
        "device": r.device or "-",
        "epoch": f"{epoch:>5} {bar(frac, 6) if frac is not None else '':6}",
        "speed": "-" if r.samples_per_s is None else f"{r.samples_per_s:.1f}",
        "loss": num(r.train_loss), "dice": num(r.ema_dice), "best": num(r.best_dice),
        "eta": duration(r.eta_s) if r.state in ("starting", "running", "stalled") else "-",
        "restarts": str(r.restarts),
        "age": duration(r.last_event_age_s),
        "note": (r.message or "")[:60],
    }


def matches(r: RunView, text: str) -> bool:
    """Filter: every word must occur in the key, label, state or device."""
    hay = " ".join(filter(None, [r.key, r.label, r.state, r.device or ""])).lower()
    return all(word in hay for word in text.lower().split())


class RunsTable(DataTable):
    """Rows are keyed by RunView.key; a tick changes only the cells that changed."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for key, label in COLUMNS:
            self.add_column(label, key=key)
        self._cells: dict[str, dict[str, object]] = {}

    @property
    def selected_key(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:   # the cursor is between rebuilds
            return None

    def show(self, runs: list[RunView], filter_text: str = "") -> None:
        visible = [r for r in runs if matches(r, filter_text)]
        keys = [r.key for r in visible]
        if keys != list(self._cells):
            self._rebuild(visible)
            return
        for r in visible:
            old = self._cells[r.key]
            new = row_cells(r)
            for col, value in new.items():
                if old.get(col) != value:
                    self.update_cell(r.key, col, value)
            self._cells[r.key] = new

    def _rebuild(self, visible: list[RunView]) -> None:
        """Rows appeared, vanished or were filtered: rebuild, keeping the cursor's run."""
        selected = self.selected_key
        self.clear()
        self._cells = {}
        for r in visible:
            cells = row_cells(r)
            self.add_row(*(cells[k] for k, _ in COLUMNS), key=r.key)
            self._cells[r.key] = cells
        if selected in self._cells:
            self.move_cursor(row=list(self._cells).index(selected))
