"""Run detail (Enter on a run): loss and Dice curves, lr, checkpoints, decisions, stderr."""

from __future__ import annotations

import os
from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static
from textual_plotext import PlotextPlot

from console.model import Decision, EpochPoint, RunView, Snapshot
from console.widgets.fmt import duration, num
from console.widgets.preview import PreviewPane


@dataclass
class DetailData:
    history: list[EpochPoint]
    stderr: list[str]
    checkpoints: list[tuple[str, float]]


class DetailLoaded(Message):
    def __init__(self, data: DetailData) -> None:
        super().__init__()
        self.data = data


def summary_text(run: RunView | None, key: str, points: list[EpochPoint]) -> Text:
    if run is None:
        return Text(f"{key}: not in the experiment any more")
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(run.label, style="bold")
    t.append(f"  {run.state}  {run.device or '-'}  pid {run.pid or '-'}")
    if run.epochs:
        t.append(f"  epoch {run.epoch or 0}/{run.epochs}")
    lr = next((p.lr for p in reversed(points) if p.lr is not None), None)
    t.append(f"  lr {'-' if lr is None else f'{lr:.2e}'}  best Dice {num(run.best_dice)}"
             f"  restarts {run.restarts}")
    if run.message:
        t.append(f"\n{run.message}", style="yellow")
    return t


def side_text(now: float, checkpoints: list[tuple[str, float]],
              decisions: list[Decision]) -> Text:
    t = Text()
    t.append("Checkpoints\n", style="bold")
    if not checkpoints:
        t.append("  none yet\n", style="dim")
    for path, mtime in checkpoints[-4:]:
        t.append(f"  {os.path.basename(path)}  {duration(now - mtime)} ago\n")
    t.append("Watchdog decisions\n", style="bold")
    if not decisions:
        t.append("  none\n", style="dim")
    for d in decisions[-8:]:
        t.append(f"  {duration(now - d.t):>7} ago  {d.action}: {d.reason}\n")
    return t


class DetailScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="back"),
                Binding("left_square_bracket", "preview(-1)", "Prev case", show=False),
                Binding("right_square_bracket", "preview(1)", "Next case")]

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.data: DetailData | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≡")
        yield Static(id="detail-summary")
        with Horizontal(id="charts"):
            yield PlotextPlot(id="loss-plot")
            yield PlotextPlot(id="dice-plot")
            yield PreviewPane(self.key, id="preview")
        with Horizontal(id="detail-bottom"):
            yield Static(id="detail-side")
            with Vertical(id="stderr-box"):
                yield Static("stderr (tail)", classes="box-title")
                yield Static(id="detail-stderr", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.key
        self.refresh_data()

    def action_preview(self, step: int) -> None:
        self.query_one(PreviewPane).page(step)

    def refresh_data(self) -> None:
        """Re-read this run's history and files off the event loop (called on each snapshot)."""
        self._load()

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def _load(self) -> None:
        engine = self.app.engine
        with self.app.engine_lock:
            data = DetailData(engine.epoch_history(self.key), engine.stderr_tail(self.key, 40),
                              engine.checkpoints(self.key))
        self.post_message(DetailLoaded(data))

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        replot = self.data is None or message.data.history != self.data.history
        self.data = message.data
        self.show(self.app.snapshot, replot=replot)

    def show(self, snap: Snapshot | None, replot: bool = True) -> None:
        if snap is None or self.data is None:
            return
        run = next((r for r in snap.runs if r.key == self.key), None)
        points = self.data.history
        self.query_one("#detail-summary", Static).update(summary_text(run, self.key, points))
        if replot:                   # curves change once per epoch, not every tick
            self._plot("#loss-plot", "Loss per epoch", points,
                       [("train", lambda p: p.train_loss), ("val", lambda p: p.val_loss)])
            self._plot("#dice-plot", "Validation Dice per epoch", points,
                       [("dice", lambda p: p.val_dice), ("EMA", lambda p: p.ema_dice)])
        decisions = [d for d in snap.decisions if d.run_key == self.key]
        self.query_one("#detail-side", Static).update(
            side_text(snap.time, self.data.checkpoints, decisions))
        tail = self.data.stderr[-12:] or ["(empty)"]
        self.query_one("#detail-stderr", Static).update("\n".join(tail))

    def _plot(self, selector: str, title: str, points: list[EpochPoint], series) -> None:
        widget = self.query_one(selector, PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.title(title)
        for label, get in series:
            xy = [(p.epoch, get(p)) for p in points if get(p) is not None]
            if xy:
                plt.plot([x for x, _ in xy], [y for _, y in xy], label=label,
                         marker="braille")
        widget.refresh()
