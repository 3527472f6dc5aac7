"""The runs table: keyed rows updated in place, one batch per snapshot."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from console.protocol.model import RunView
from console.protocol.vocabulary import COLUMNS, STATE_STYLE, cells, progress_fraction
from console.protocol.fmt import bar

STATE_ORDER = {s: i for i, s in enumerate(("failed", "stalled", "backoff", "waiting", "running",
                                            "starting", "queued", "stopped", "completed"))}

PAD = 24          # about the width of the pinned Config + Fold/stage columns

# Sort orders the `o` key cycles through: (name, key function; None = experiment order).
SORTS = [
    ("experiment order", None),
    ("state", lambda r: STATE_ORDER.get(r.state, 99)),
    ("best EMA", lambda r: -(r.best_dice if r.best_dice is not None else -1.0)),
    ("ETA", lambda r: r.eta_s if r.eta_s is not None else float("inf")),
]


def row_cells(r: RunView) -> dict[str, object]:
    """Cell values for one run, keyed by column (text from console.protocol.vocabulary)."""
    c: dict[str, object] = dict(cells(r))
    c["state"] = Text(r.state, style=STATE_STYLE.get(r.state, ""))
    frac = progress_fraction(r)
    if c["epoch"] != "-":
        c["epoch"] = f"{c['epoch']:>7} {bar(frac, 6) if frac is not None else '':6}"
    return c


def matches(r: RunView, text: str) -> bool:
    """Filter: every word must occur in the key, label, state or device."""
    hay = " ".join(filter(None, [r.key, r.label, r.state, r.device or ""])).lower()
    return all(word in hay for word in text.lower().split())


class RunsTable(DataTable):
    """Rows are keyed by RunView.key; a tick changes only the cells that changed, and a
    cell that grows widens its column (update_width) so no value is ever cut."""

    BINDINGS = [Binding("j", "cursor_down", "Down", show=False),
                Binding("k", "cursor_up", "Up", show=False)]

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.fixed_columns = 2            # Config and Fold/stage stay when scrolling sideways
        for key, label, _ in COLUMNS:
            self.add_column(label, key=key)
        # Scrolled fully right, the pinned columns cover the start of the last ones: an empty
        # column as wide as they are lets the note scroll out from under them.
        self.add_column("", key="pad", width=PAD)
        self._cells: dict[str, dict[str, object]] = {}
        self.sort_index = 0

    @property
    def sort_name(self) -> str:
        return SORTS[self.sort_index][0]

    def cycle_sort(self) -> str:
        self.sort_index = (self.sort_index + 1) % len(SORTS)
        self._cells = {}                  # force a rebuild in the new order
        return self.sort_name

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
        key_fn = SORTS[self.sort_index][1]
        if key_fn is not None:
            visible.sort(key=key_fn)      # stable: ties keep the experiment order
        keys = [r.key for r in visible]
        if keys != list(self._cells):
            self._rebuild(visible)
            return
        for r in visible:
            old = self._cells[r.key]
            new = row_cells(r)
            for col, value in new.items():
                if old.get(col) != value:
                    self.update_cell(r.key, col, value, update_width=True)
            self._cells[r.key] = new

    def _rebuild(self, visible: list[RunView]) -> None:
        """Rows appeared, vanished, were filtered or re-sorted: rebuild, keeping the cursor's run."""
        selected = self.selected_key
        self.clear()
        self._cells = {}
        for r in visible:
            c = row_cells(r)
            self.add_row(*(c[k] for k, _, _ in COLUMNS), "", key=r.key)
            self._cells[r.key] = c
        if selected in self._cells:
            self.move_cursor(row=list(self._cells).index(selected))
