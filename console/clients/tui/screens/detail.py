"""Run detail (Enter on a row). A fold: loss and Dice curves (or every fold of its
configuration, f), per-class pseudo-Dice, epoch time, data wait, peak memory, checkpoints,
decisions, stderr. A stage: its outcome, the results it wrote, and its log."""

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

from console.protocol.model import Decision, EpochPoint, RunView, Snapshot
from console.clients.text import results_lines
from console.protocol.vocabulary import note
from console.protocol.fmt import duration, gigabytes, num, seconds
from console.clients.tui.widgets.preview import PreviewPane

# NO_COLOR: series differ by their marker letter, not only by colour.
MARKERS = {"train": "t", "val": "v", "val Dice": "d", "EMA": "e"}


@dataclass
class DetailData:
    history: list[EpochPoint]
    stderr: list[str]
    checkpoints: list[tuple[str, float]]
    folds: dict[str, list[EpochPoint]] | None = None     # overlay: every fold of the config


class DetailLoaded(Message):
    def __init__(self, data: DetailData) -> None:
        super().__init__()
        self.data = data


def summary_text(run: RunView | None, key: str, points: list[EpochPoint],
                 class_names: list[str] | None = None) -> Text:
    if run is None:
        return Text(f"{key}: not in the experiment any more")
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(run.label, style="bold")
    t.append(f"  {run.state}  {run.device or '-'}  pid {run.pid or '-'}")
    if run.epochs:
        t.append(f"  epoch {run.epoch or 0}/{run.epochs}")
    last = points[-1] if points else None
    lr = next((p.lr for p in reversed(points) if p.lr is not None), None)
    if run.kind == "fold":
        t.append(f"  lr {'-' if lr is None else f'{lr:.2e}'}  restarts {run.restarts}")
        t.append(f"\nval Dice {num(run.val_dice)}  EMA {num(run.ema_dice)}  "
                 f"best EMA {num(run.best_dice)}")
        per_class = run.val_dice_per_class or (last.val_dice_per_class if last else None)
        if per_class:
            names = class_names or []
            t.append("  per class " + "  ".join(
                f"{names[i] if i < len(names) else i + 1}:{num(d)}"
                for i, d in enumerate(per_class)))
        epoch_s = run.epoch_s if run.epoch_s is not None else (last.epoch_s if last else None)
        wait = run.data_wait_frac if run.data_wait_frac is not None else (
            last.data_wait_frac if last else None)
        mem = run.peak_mem_mb if run.peak_mem_mb is not None else (
            last.peak_mem_mb if last else None)
        t.append(f"\nepoch time {seconds(epoch_s)}  data wait "
                 f"{'-' if wait is None else f'{wait:.0%}'}  peak memory "
                 f"{'-' if mem is None else gigabytes(mem)}  samples/s "
                 f"{'-' if run.samples_per_s is None else f'{run.samples_per_s:.1f}'}")
    elif run.outcome:
        t.append(f"\n{run.outcome}", style="bold")
    t.append(f"\nfolder {run.run_dir or '-'}", style="dim")
    if run.origin:
        t.append(f"\nimported from {run.origin} (origin.json in the folder)", style="cyan")
    why = run.message if run.kind == "fold" or run.outcome else note(run)
    if why:
        t.append(f"\n{why}", style="yellow")
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
    BINDINGS = [Binding("escape,q", "app.pop_screen", "Back", id="back"),
                Binding("f", "overlay", "All folds"),
                Binding("t", "logs", "Logs"),
                Binding("left_square_bracket", "preview(-1)", "Prev case", show=False),
                Binding("right_square_bracket", "preview(1)", "Next case")]

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.data: DetailData | None = None
        self.overlay = False

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
                yield Static("stderr (tail)", classes="box-title", id="stderr-title")
                yield Static(id="detail-stderr", markup=False)
        yield Footer()

    def _run(self) -> RunView | None:
        snap = self.app.snapshot
        return next((r for r in snap.runs if r.key == self.key), None) if snap else None

    def on_mount(self) -> None:
        self.sub_title = self.key
        run = self._run()
        if run is not None and run.kind == "stage":      # no training curves for a stage
            self.add_class("stage")                      # results above, full width; log below
            for plot in self.query(PlotextPlot):
                plot.display = False
            if self.key != "predict":                    # predict: the test-set previews
                self.query_one("#charts").display = False
            self.query_one("#stderr-title", Static).update("log (stdout + stderr, tail; t: all)")
        self.refresh_data()

    def action_preview(self, step: int) -> None:
        self.query_one(PreviewPane).page(step)

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "overlay":
            run = self._run()
            return run is not None and run.kind == "fold"
        if action == "preview":                  # paging only with previews to page
            return bool(self.query(PreviewPane) and self.query_one(PreviewPane).items)
        return True

    def action_overlay(self) -> None:
        self.overlay = not self.overlay
        self.data = None                # replot
        self.refresh_data()

    def action_logs(self) -> None:
        from console.clients.tui.screens.logs import LogScreen
        run = self._run()
        self.app.push_screen(LogScreen(self.key, run.run_dir if run else None))

    def refresh_data(self) -> None:
        """Re-read this run's history and files off the event loop (called on each snapshot)."""
        self._load()

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def _load(self) -> None:
        engine, run = self.app.engine, self._run()
        folds = None
        with self.app.engine_lock:
            stage = run is not None and run.kind == "stage"
            tail = engine.stderr_tail(self.key, 40)
            if stage and run.run_dir:
                tail = _tail_file(os.path.join(run.run_dir, "stdout.log"), 30) + tail
            if self.overlay and run is not None and run.configuration:
                keys = [r.key for r in self.app.snapshot.runs
                        if r.kind == "fold" and r.configuration == run.configuration]
                folds = {k: engine.epoch_history(k) for k in keys}
            data = DetailData(engine.epoch_history(self.key), tail,
                              engine.checkpoints(self.key), folds)
        self.post_message(DetailLoaded(data))

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        replot = self.data is None or message.data.history != self.data.history \
            or message.data.folds != self.data.folds
        self.data = message.data
        self.show(self.app.snapshot, replot=replot)

    def show(self, snap: Snapshot | None, replot: bool = True) -> None:
        if snap is None or self.data is None:
            return
        run = next((r for r in snap.runs if r.key == self.key), None)
        points = self.data.history
        self.query_one("#detail-summary", Static).update(
            summary_text(run, self.key, points, snap.class_names))
        if run is not None and run.kind == "stage":
            lines = results_lines(snap.results, width=max(40, self.app.size.width - 4)) \
                if snap.results else [
                "no results yet: the stages write them as they complete"]
            self.query_one("#detail-side", Static).update(Text("\n".join(lines[:40])))
        else:
            decisions = [d for d in snap.decisions if d.run_key == self.key]
            self.query_one("#detail-side", Static).update(
                side_text(snap.time, self.data.checkpoints, decisions))
        if replot and (run is None or run.kind == "fold"):
            self._plot("#loss-plot", "Loss per epoch", points,
                       [("train", lambda p: p.train_loss), ("val", lambda p: p.val_loss)])
            if self.data.folds:
                self._overlay(run)
            else:
                self._plot("#dice-plot", "Pseudo-Dice per epoch", points,
                           [("val Dice", lambda p: p.val_dice), ("EMA", lambda p: p.ema_dice)])
        tail = self.data.stderr[-12:] or ["(empty)"]
        self.query_one("#detail-stderr", Static).update("\n".join(tail))

    def _overlay(self, run: RunView | None) -> None:
        widget = self.query_one("#dice-plot", PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.title(f"EMA pseudo-Dice, every fold of {run.configuration if run else ''}")
        xs: list[int] = []
        for key, points in (self.data.folds or {}).items():
            xy = [(p.epoch + 1, p.ema_dice) for p in points if p.ema_dice is not None]
            if xy:
                fold = key.rsplit("/", 1)[-1]
                plt.plot([x for x, _ in xy], [y for _, y in xy], label=f"fold {fold}",
                         marker=fold[-1])       # the fold's digit: distinct without colour
                xs += [x for x, _ in xy]
        _int_ticks(plt, xs)
        widget.refresh()

    def _plot(self, selector: str, title: str, points: list[EpochPoint], series) -> None:
        widget = self.query_one(selector, PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.title(title)
        xs: list[int] = []
        for label, get in series:
            xy = [(p.epoch + 1, get(p)) for p in points if get(p) is not None]
            if xy:
                plt.plot([x for x, _ in xy], [y for _, y in xy], label=label,
                         marker=MARKERS.get(label, "braille"))
                xs += [x for x, _ in xy]
        _int_ticks(plt, xs)
        widget.refresh()


def _int_ticks(plt, xs: list[int]) -> None:
    """Epochs are whole numbers: at most ~6 integer ticks, never 2.5."""
    if not xs:
        return
    lo, hi = min(xs), max(xs)
    step = max(1, -(-(hi - lo) // 5))
    plt.xticks(list(range(lo, hi + 1, step)))


def _tail_file(path: str, lines: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 32 * 1024))
            data = f.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-lines:]
