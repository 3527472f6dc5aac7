"""The Textual console over an engine (console.model.EngineControl): `run_app`."""

from __future__ import annotations

import threading
import time
from collections import deque
from functools import partial
from typing import Callable

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Input
from textual.worker import Worker, WorkerState

from console.changes import diff
from console.model import ACTIVE_STATES, EngineControl, RunView, Snapshot
from console.screens.confirm import ConfirmScreen
from console.screens.detail import DetailScreen
from console.screens.help import HelpScreen
from console.screens.launch import LaunchRequest, LaunchScreen
from console.widgets.gpu_panel import GpuPanel
from console.widgets.runs_table import RunsTable

POLL_INTERVAL_S = 0.5      # 2 Hz: a bounded redraw rate, cheap over SSH

# Actions that change something: hidden in read-only mode (check_action).
CHANGING = frozenset({"launch", "stop", "kill", "resume", "scratch", "watchdog", "crossval",
                      "find_best", "predict", "quit_stop_all"})

KEYS = [  # key, action, footer label, what it does (BINDINGS, help screen, docs/console.md)
    ("l", "launch", "Launch", "Launch: configurations x folds x GPUs"),
    ("s", "stop", "Stop", "Stop the selected run (graceful, asks first)"),
    ("k", "kill", "Kill", "Kill the selected run (SIGKILL, asks first)"),
    ("r", "resume", "Resume", "Resume the selected run"),
    ("x", "scratch", "Scratch", "Restart the selected run from scratch (asks first)"),
    ("w", "watchdog", "Watchdog", "Toggle the watchdog"),
    ("e", "crossval", "Evaluate", "Run cross-validation evaluation now"),
    ("b", "find_best", "Best", "Find the best configuration / ensemble now"),
    ("p", "predict", "Predict", "Predict the test images now"),
    ("slash", "filter", "Filter", "Filter runs (Esc clears)"),
    ("enter", "detail", "Detail", "Run detail: curves, checkpoints, stderr"),
    ("f1,question_mark", "help", "Help", "This help"),
    ("q", "quit", "Quit", "Quit; runs keep running"),
    ("Q", "quit_stop_all", "Quit+stop", "Quit and stop all runs (asks first)"),
]
SHOW_IN_FOOTER = {"launch", "stop", "kill", "resume", "filter", "help", "quit"}
KEY_NAMES = {"slash": "/", "enter": "Enter", "f1,question_mark": "F1 ?", "escape": "Esc"}


class SnapshotReady(Message):
    """A fresh snapshot from the poll worker."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


def key_table() -> str:
    rows = [(KEY_NAMES.get(k, k), d) for k, _, _, d in KEYS]
    rows += [("Esc", "Back / close dialog"), ("arrows", "Move in the runs table"),
             ("ctrl+p", "Command palette (every action by name)")]
    return "\n".join(f"{k:>7}  {d}" for k, d in rows)


def describe_changes(old: Snapshot | None, new: Snapshot) -> list[tuple[str, str]]:
    """Notifications (message, severity) for restarts, failures and completions."""
    return [(c.text, c.severity) for c in diff(old, new)
            if c.notable and (old is not None or c.kind == "notice")]


class FoldwatchCommands(Provider):
    """The console's actions in the command palette (only those allowed right now)."""

    def _commands(self) -> list[tuple[str, str, str]]:
        app = self.app
        return [(desc, action, KEY_NAMES.get(key, key)) for key, action, _, desc in KEYS
                if app.check_action(action, ()) is True]

    async def discover(self) -> Hits:
        for desc, action, key in self._commands():
            yield DiscoveryHit(desc, partial(self.app.run_action, action), help=f"key: {key}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for desc, action, key in self._commands():
            score = matcher.match(desc)
            if score > 0:
                yield Hit(score, matcher.highlight(desc), partial(self.app.run_action, action),
                          help=f"key: {key}")


class FoldwatchApp(App):
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {FoldwatchCommands}
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [Binding(k, a, short, id=a, show=a in SHOW_IN_FOOTER)
                for k, a, short, _ in KEYS if a != "detail"] + [
        Binding("escape", "clear_filter", "Clear filter", show=False, id="clear_filter"),
    ]

    def __init__(self, engine: EngineControl, *, title: str = "foldwatch",
                 poll_interval: float = POLL_INTERVAL_S) -> None:
        super().__init__()
        self.engine = engine
        self.engine_lock = threading.Lock()     # the engine is not thread-safe; one caller at a time
        self.title = title
        self.poll_interval = poll_interval
        self.snapshot: Snapshot | None = None
        self.read_only = bool(getattr(engine, "read_only", False))
        self.filter_text = ""
        self.quit_mode = "leave"               # or "stop-all"
        self._polling = False
        self.polls = 0
        self.notices: deque[str] = deque(maxlen=100)    # what notify() said, newest last

    def notify(self, message: str, *args, **kwargs) -> None:
        self.notices.append(str(message))
        super().notify(message, *args, **kwargs)

    # -- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≡")
        yield GpuPanel("waiting for the engine…", id="gpus")
        yield Input(placeholder="filter runs: words in config/fold, state or device (Esc clears)",
                    id="filter", classes="hidden")
        yield RunsTable(id="runs")
        yield Footer()

    def on_mount(self) -> None:
        self.main_widget(RunsTable).focus()
        self.set_interval(self.poll_interval, self.request_poll)
        self.request_poll()

    # -- polling ------------------------------------------------------------------------------
    def request_poll(self) -> None:
        if self._polling:       # a slow engine: skip ticks rather than pile up polls
            return
        self._polling = True
        self._poll()

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False)
    def _poll(self) -> None:
        try:
            with self.engine_lock:
                snap = self.engine.poll()
            self.post_message(SnapshotReady(snap))
        finally:
            self._polling = False

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            where = "engine poll" if event.worker.group == "poll" else repr(event.worker.name)
            self.notify(f"{where} failed: {type(error).__name__}: {error}", severity="error",
                        title="engine error", timeout=8)

    def main_widget(self, selector):
        """A widget of the main screen, whichever screen is on top."""
        return self.screen_stack[0].query_one(selector)

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        if not self.screen_stack or not self.is_running:
            return                   # a poll that finished while the app was closing
        old, snap = self.snapshot, message.snapshot
        self.snapshot = snap
        self.polls += 1
        if snap.read_only != self.read_only:
            self.read_only = snap.read_only
            self.refresh_bindings()
        self.sub_title = self._status_line(snap)
        try:
            with self.batch_update():    # one repaint for the whole tick
                self.main_widget(GpuPanel).show(snap)
                self.main_widget(RunsTable).show(snap.runs, self.filter_text)
        except NoMatches:            # main screen torn down (closing)
            return
        for text, severity in describe_changes(old, snap):
            self.notify(text, severity=severity, timeout=6)
        if isinstance(self.screen, DetailScreen):
            self.screen.refresh_data()

    def _status_line(self, snap: Snapshot) -> str:
        active = sum(1 for r in snap.runs if r.state in ACTIVE_STATES)
        done = sum(1 for r in snap.runs if r.state == "completed")
        parts = [f"{active} active", f"{done}/{len(snap.runs)} done",
                 "watchdog on" if snap.watchdog_enabled else "watchdog OFF"]
        if snap.read_only:           # first: the header cuts the end off at 80 columns
            parts.insert(0, "READ-ONLY")
        if snap.finished:
            parts.append("finished" if snap.succeeded else "finished with failures")
        if snap.notices:             # a damaged state file, a full disk: before anything else
            parts.insert(0, f"! {snap.notices[0]}")
        return " · ".join(parts)

    # -- engine calls off the event loop ---------------------------------------------------------
    def call_engine(self, description: str, fn: Callable[[], object]) -> None:
        """Run an engine action in a worker, then poll; errors become notifications."""
        def act() -> None:
            with self.engine_lock:
                fn()
            self.call_from_thread(self.notify, description, timeout=3)
            self.call_from_thread(self.request_poll)
        self.run_worker(act, name=description, group="action", thread=True,
                        exit_on_error=False)

    # -- helpers ------------------------------------------------------------------------------
    def selected_run(self) -> RunView | None:
        key = self.main_widget(RunsTable).selected_key
        if key is None or self.snapshot is None:
            return None
        return next((r for r in self.snapshot.runs if r.key == key), None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in CHANGING and self.read_only:
            return False
        if action in ("crossval", "find_best", "predict") and self.snapshot is not None:
            return bool(self._stage_keys(action))
        return True

    def _stage_keys(self, action: str) -> list[str]:
        if self.snapshot is None:
            return []
        stages = [r for r in self.snapshot.runs if r.kind == "stage"]
        if action == "crossval":
            keys = [r.key for r in stages if r.key.startswith("crossval-")]
            sel = self.selected_run() if self.is_mounted else None
            if sel and sel.configuration and f"crossval-{sel.configuration}" in keys:
                return [f"crossval-{sel.configuration}"]
            return keys
        wanted = {"find_best": "find-best", "predict": "predict"}[action]
        return [r.key for r in stages if r.key == wanted]

    def _with_run(self, verb: str) -> RunView | None:
        run = self.selected_run()
        if run is None:
            self.notify(f"select a run to {verb} first", severity="warning")
        return run

    # -- actions ------------------------------------------------------------------------------
    def action_launch(self) -> None:
        if self.snapshot is None:
            self.notify("waiting for the engine's first snapshot", severity="warning")
            return

        def done(req: LaunchRequest | None) -> None:
            if req is not None:
                self.call_engine(
                    f"launching {', '.join(req.configurations)} x folds "
                    f"{', '.join(map(str, req.folds))}",
                    lambda: self.engine.launch(req.configurations, req.folds, req.gpus))
        self.push_screen(LaunchScreen(self.snapshot), done)

    def _confirmed(self, question: str, yes: str, description: str,
                   fn: Callable[[], object]) -> None:
        def done(ok: bool | None) -> None:
            if ok:
                self.call_engine(description, fn)
        self.push_screen(ConfirmScreen(question, yes), done)

    def _active(self, run: RunView | None, verb: str, states=ACTIVE_STATES) -> RunView | None:
        if run is not None and run.state not in states:
            self.notify(f"{run.label} is {run.state}: nothing to {verb}", severity="warning")
            return None
        return run

    def action_stop(self) -> None:
        if run := self._active(self._with_run("stop"), "stop",
                               ACTIVE_STATES | {"queued", "backoff"}):
            self._confirmed(f"Stop {run.label}? (SIGTERM, then SIGKILL after the grace period; "
                            "resume later with r)", "Stop", f"stopping {run.label}",
                            lambda: self.engine.stop(run.key))

    def action_kill(self) -> None:
        if run := self._active(self._with_run("kill"), "kill"):
            self._confirmed(f"Kill {run.label} now (SIGKILL)?", "Kill", f"killing {run.label}",
                            lambda: self.engine.kill(run.key))

    def action_resume(self) -> None:
        if run := self._with_run("resume"):
            self.call_engine(f"resuming {run.label}", lambda: self.engine.resume(run.key))

    def action_scratch(self) -> None:
        if run := self._with_run("restart"):
            self._confirmed(f"Restart {run.label} from scratch? Its outputs are moved aside "
                            "(renamed, never deleted).", "Restart",
                            f"restarting {run.label} from scratch",
                            lambda: self.engine.restart_from_scratch(run.key))

    def action_watchdog(self) -> None:
        enabled = not (self.snapshot.watchdog_enabled if self.snapshot else True)
        self.call_engine(f"watchdog {'on' if enabled else 'off'}",
                         lambda: self.engine.set_watchdog(enabled))

    def _run_stages(self, action: str) -> None:
        keys = self._stage_keys(action)
        if not keys:
            self.notify("this experiment has no such stage", severity="warning")
            return

        def go() -> None:
            for k in keys:
                self.engine.run_stage_now(k)
        self.call_engine(f"queued {', '.join(keys)}", go)

    def action_crossval(self) -> None:
        self._run_stages("crossval")

    def action_find_best(self) -> None:
        self._run_stages("find_best")

    def action_predict(self) -> None:
        self._run_stages("predict")

    def action_filter(self) -> None:
        box = self.main_widget("#filter")
        box.remove_class("hidden")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.main_widget("#filter")
        if box.has_class("hidden"):
            return
        box.value = ""
        box.add_class("hidden")
        self.main_widget(RunsTable).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        if self.snapshot is not None:
            self.main_widget(RunsTable).show(self.snapshot.runs, self.filter_text)

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.main_widget(RunsTable).focus()

    @on(DataTable.RowSelected, "#runs")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_detail()

    def action_detail(self) -> None:
        if run := self._with_run("show"):
            self.push_screen(DetailScreen(run.key))

    def action_help(self) -> None:
        self.push_screen(HelpScreen(key_table()))

    def action_quit(self) -> None:
        self.quit_mode = "leave"
        self.exit("leave")

    def action_quit_stop_all(self) -> None:
        def done(ok: bool | None) -> None:
            if ok:
                self.quit_mode = "stop-all"
                self.exit("stop-all")
        self.push_screen(ConfirmScreen("Stop ALL runs and quit? Runs get SIGTERM and are "
                                       "resumable later.", "Stop all"), done)


def stop_all_and_wait(engine: EngineControl, timeout_s: float = 60.0) -> int:
    """Stop every run and keep polling (the engine escalates to SIGKILL) until none is active."""
    engine.stop_all()
    deadline = time.monotonic() + timeout_s
    while True:
        active = [r for r in engine.poll().runs if r.state in ACTIVE_STATES]
        if not active or time.monotonic() > deadline:
            return len(active)
        time.sleep(0.2)


def run_app(engine: EngineControl, *, title: str, mouse: bool = False) -> int:
    """Run the console until the user quits; returns the exit status."""
    app = FoldwatchApp(engine, title=title)
    app.run(mouse=mouse)
    if app.quit_mode == "stop-all":
        print("foldwatch: stopping all runs …", flush=True)
        left = stop_all_and_wait(engine)
        print("foldwatch: all runs stopped" if not left else
              f"foldwatch: {left} runs still stopping; check with `foldwatch status`")
    else:
        snap = app.snapshot
        active = [r.label for r in snap.runs if r.state in ACTIVE_STATES] if snap else []
        if active and not (snap and snap.read_only):
            print(f"foldwatch: {len(active)} runs left running ({', '.join(active[:6])}"
                  f"{' …' if len(active) > 6 else ''}); `foldwatch up` adopts them again, "
                  "`foldwatch stop` stops them")
    return app.return_code or 0
