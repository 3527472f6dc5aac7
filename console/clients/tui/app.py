"""The Textual console over an engine (console.protocol.model.EngineControl): `run_app`."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import Worker, WorkerState

from console.clients.changes import describe_changes
from console.clients.eta import experiment_eta_s
from console.clients.tui.keys import CHANGING, KEYS, ON_ROW, SHOW_IN_FOOTER, key_table
from console.protocol.model import ACTIVE_STATES, EngineControl, RunView, Snapshot
from console.clients.tui.palette import FoldwatchCommands
from console.clients.tui.permissions import stage_keys, why_not
from console.clients.tui.quitting import after_close
from console.clients.text import results_bar
from console.clients.tui.screens.confirm import ConfirmScreen
from console.clients.tui.screens.detail import DetailScreen
from console.clients.tui.screens.help import HelpScreen
from console.clients.tui.screens.launch import LaunchRequest, LaunchScreen
from console.clients.tui.screens.logs import LogScreen
from console.clients.tui.screens.notices import Notice, NoticesScreen
from console.clients.tui.screens.results import ResultsScreen
from console.clients.tui.screens.gpus import GpuScreen
from console.protocol.fmt import duration
from console.clients.tui.widgets.gpu_panel import GpuPanel
from console.clients.tui.widgets.runs_table import RunsTable

POLL_INTERVAL_S = 0.5      # 2 Hz: a bounded redraw rate, cheap over SSH
# The main screen's actions; hidden while another screen is on top (except help/notices/bell).
MAIN_ACTIONS = frozenset(a for _, a, _, _ in KEYS) - {"help", "notices", "bell"}


class SnapshotReady(Message):
    """A fresh snapshot from the poll worker."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class FoldwatchApp(App):
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {FoldwatchCommands}
    ENABLE_COMMAND_PALETTE = True
    # A disabled action's key falls through to its hidden "refused" binding, which says why.
    BINDINGS = [Binding(k, a, short, id=a, show=a in SHOW_IN_FOOTER)
                for k, a, short, _ in KEYS if a != "detail"] + [
        Binding(k, f"refused('{a}')", show=False) for k, a, _, _ in KEYS if a != "detail"] + [
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
        self.read_only = False                  # the snapshots say (a --read-only view)
        self.filter_text = ""
        self.quit_mode = "leave"               # or "stop-all"
        self._polling = False
        self.polls = 0
        self.notices: deque[str] = deque(maxlen=200)    # what notify() said, newest last
        self.history: deque[Notice] = deque(maxlen=200)
        self.bell_on = True                  # a terminal bell when a run fails (key a)

    def notify(self, message: str, *args, **kwargs) -> None:
        self.notices.append(str(message))
        self.history.append(Notice(time.time(), str(message),
                                   str(kwargs.get("severity", "information"))))
        super().notify(message, *args, **kwargs)

    # -- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≡")
        yield GpuPanel("waiting for the engine…", id="gpus")
        yield Input(placeholder="filter runs: words in config/fold, state or device (Esc clears)",
                    id="filter", classes="hidden")
        yield RunsTable(id="runs")
        yield Static(id="results-bar", markup=False)
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
                bar = self.main_widget("#results-bar")
                line = results_bar(snap)
                bar.display = bool(line)
                bar.update(line)
        except NoMatches:            # main screen torn down (closing)
            return
        for text, severity in describe_changes(old, snap):
            self.notify(text, severity=severity, timeout=6)
            if severity == "error" and self.bell_on:
                self.bell()
        if snap.supervisor is not None and (_supervised(old) != _supervised(snap) if old
                                            else not _supervised(snap)):
            self.notify(snap.supervisor.text, timeout=10,
                        severity="information" if _supervised(snap) else "warning")
        if hasattr(self.screen, "refresh_data"):
            self.screen.refresh_data()

    def _status_line(self, snap: Snapshot) -> str:
        active = sum(1 for r in snap.runs if r.state in ACTIVE_STATES)
        done = sum(1 for r in snap.runs if r.state == "completed")
        parts = [f"{active} active", f"{done}/{len(snap.runs)} done"]
        eta = experiment_eta_s(snap)
        if eta is not None and not snap.finished:
            parts.append(f"ETA {duration(eta)}")
        parts.append("watchdog on" if snap.watchdog_enabled else "watchdog OFF")
        if snap.read_only:           # first: the header cuts the end off at 80 columns
            parts.insert(0, "READ-ONLY")
        if snap.supervisor is not None and not _supervised(snap):
            parts.insert(0, "NOT SUPERVISED")
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
                outcome = fn()
            # the engine's own answer when it gives one (what really happened), else ours
            text = outcome if isinstance(outcome, str) and outcome else description
            self.call_from_thread(self.notify, text, timeout=4)
            self.call_from_thread(self.request_poll)
        self.run_worker(act, name=description, group="action", thread=True,
                        exit_on_error=False)

    # -- helpers ------------------------------------------------------------------------------
    def selected_run(self) -> RunView | None:
        key = self.main_widget(RunsTable).selected_key
        if key is None or self.snapshot is None:
            return None
        return next((r for r in self.snapshot.runs if r.key == key), None)

    def why_not(self, action: str) -> str | None:
        """Why `action` cannot run now for the selected row (None: it can)."""
        run = self.selected_run() if self.is_mounted and self.screen_stack else None
        return why_not(action, self.snapshot, run, read_only=self.read_only,
                       changing=CHANGING, on_row=ON_ROW)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "refused":
            return True
        if len(self.screen_stack) > 1 and action in MAIN_ACTIONS:
            return False             # another screen is on top: its own keys apply
        try:
            reason = self.why_not(action)
        except NoMatches:            # the main screen is being built or torn down
            return True
        if reason is None:
            return True
        if (action in CHANGING and self.read_only) or "no such stage" in reason:
            return False             # hidden: never possible in this console
        return None                  # shown disabled: not for this row, now

    def action_refused(self, action: str) -> None:
        reason = self.why_not(action)
        if reason:
            self.notify(reason, severity="warning", timeout=5)

    def _stage_keys(self, action: str) -> list[str]:
        if self.snapshot is None:
            return []
        return stage_keys(self.snapshot, action, self.selected_run())

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
                self.call_engine(req.summary,
                                 lambda: self.engine.launch(req.configurations, req.folds,
                                                            req.gpus))
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
                               ACTIVE_STATES | {"queued", "backoff", "waiting"}):
            if run.state in ("queued", "backoff", "waiting"):   # no process: nothing to signal
                question = (f"Take {run.label} out of the queue? It stays stopped until you "
                            "resume it with r.")
            else:
                question = (f"Stop {run.label}? It saves a checkpoint and exits (SIGTERM, then "
                            "SIGKILL after the grace period); it stays stopped until you "
                            "resume it with r.")
            self._confirmed(question, "Stop", f"stopping {run.label}",
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

        def go() -> str:
            answers = [self.engine.run_stage_now(k) for k in keys]
            return "; ".join(a for a in answers if isinstance(a, str)) or \
                f"{', '.join(keys)}: runs as soon as its inputs are complete"
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

    def action_logs(self) -> None:
        if run := self._with_run("show the log of"):
            self.push_screen(LogScreen(run.key, run.run_dir))

    def action_results(self) -> None:
        self.push_screen(ResultsScreen())

    def action_gpus(self) -> None:
        self.push_screen(GpuScreen())

    def action_notices(self) -> None:
        self.push_screen(NoticesScreen(list(self.history)))

    def action_sort(self) -> None:
        name = self.main_widget(RunsTable).cycle_sort()
        if self.snapshot is not None:
            self.main_widget(RunsTable).show(self.snapshot.runs, self.filter_text)
        self.notify(f"runs sorted by {name}", timeout=2)

    def action_bell(self) -> None:
        self.bell_on = not self.bell_on
        self.notify(f"bell on failure {'on' if self.bell_on else 'off'}", timeout=2)

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


def _supervised(snap: Snapshot | None) -> bool:
    """A supervisor is alive (a snapshot without one came from an in-process engine)."""
    return snap is not None and (snap.supervisor is None
                                 or snap.supervisor.state in ("alive", "starting"))


def run_app(engine: EngineControl, *, title: str, mouse: bool = False,
            stop_on_exit: bool = False) -> int:
    """Run the console until the user closes it; returns the exit status."""
    app = FoldwatchApp(engine, title=title)
    app.run(mouse=mouse)
    after_close(engine, app.snapshot, stop_all=app.quit_mode == "stop-all",
                stop_on_exit=stop_on_exit and not app.read_only)
    return app.return_code or 0
