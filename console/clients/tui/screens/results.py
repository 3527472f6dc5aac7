"""Results (v): cross-validation per configuration and class, ensembles, the chosen model and
postprocessing, the test set, and the paths of the files; the same text `foldwatch status` prints."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from console.clients.text import results_lines


class ResultsScreen(Screen):
    BINDINGS = [Binding("escape,q,v", "app.pop_screen", "Back", id="back")]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≡")
        with VerticalScroll(id="results-box"):
            yield Static(id="results-text", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "results"
        self.refresh_data()

    def on_resize(self) -> None:
        self.refresh_data()             # the tables are laid out for the width

    def refresh_data(self) -> None:
        snap = self.app.snapshot
        if snap is None or snap.results is None:
            text = "no results: the engine has not read any yet"
        else:
            # padding and a vertical scrollbar: 4 columns
            text = "\n".join(results_lines(snap.results, width=max(40, self.app.size.width - 4)))
        self.query_one("#results-text", Static).update(text)
