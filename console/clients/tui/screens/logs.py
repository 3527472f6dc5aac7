"""Log viewer (t): a run's or stage's stdout.log and stderr.log; follows the tail, scrolls,
searches. Only the last WINDOW bytes are loaded when it opens, then what is appended."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Log, Static

from console.store.logtail import TextTail

MAX_LINES = 20_000
STREAMS = ("stdout", "stderr")


class LogScreen(Screen):
    BINDINGS = [Binding("escape,q", "close", "Back", id="back"),
                Binding("tab", "switch", "stdout/stderr"),
                Binding("slash", "search", "Search"),
                Binding("n", "next_match", "Next match"),
                Binding("N", "next_match(-1)", "Previous", show=False),
                Binding("f", "follow", "Follow"),
                Binding("j", "scroll(1)", show=False), Binding("k", "scroll(-1)", show=False)]

    def __init__(self, key: str, run_dir: str | None, stream: str = "stdout") -> None:
        super().__init__()
        self.key, self.run_dir, self.stream = key, run_dir, stream
        self.lines: list[str] = []
        self.tail: TextTail | None = None
        self.query_text = ""
        self.match = -1
        self.follow = True

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≡")
        yield Static(id="log-status", markup=False)
        yield Log(id="log", max_lines=MAX_LINES, auto_scroll=True)
        yield Input(placeholder="search (Enter finds, n next, N previous, Esc closes)",
                    id="log-search", classes="hidden")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"{self.key} log"
        self._open()
        self.set_interval(0.5, self.refresh_data)

    @property
    def path(self) -> Path | None:
        return Path(self.run_dir) / f"{self.stream}.log" if self.run_dir else None

    def _open(self) -> None:
        self.lines = []
        self.match = -1
        self.query_one(Log).clear()
        self.tail = TextTail(self.path) if self.path else None
        self.refresh_data()

    def refresh_data(self) -> None:
        if self.tail is not None:
            self._read(self.tail)
        else:
            self._status()

    @work(thread=True, exclusive=True, group="log", exit_on_error=False)
    def _read(self, tail: TextTail) -> None:
        lines, reset = tail.read()
        self.app.call_from_thread(self._append, tail, lines, reset)

    def _append(self, tail: TextTail, lines: list[str], reset: bool) -> None:
        if tail is not self.tail:
            return                     # the stream was switched meanwhile
        log = self.query_one(Log)
        if reset:
            self.lines = []
            log.clear()
        if lines:
            self.lines = (self.lines + lines)[-MAX_LINES:]
            log.auto_scroll = self.follow
            log.write_lines(lines)
        self._status()

    def _status(self) -> None:
        where = str(self.path) if self.path else "no run folder known for this run"
        parts = [f"{self.stream}: {where}", f"{len(self.lines)} lines"]
        if self.tail is not None and self.tail.skipped:
            parts.append(f"first {self.tail.skipped // 1024} KiB not loaded")
        if self.tail is not None and self.tail.inode is None:
            parts.append("(no such file yet)")
        parts.append("following" if self.follow else "paused (f follows)")
        if self.query_text:
            hits = self._hits()
            parts.append(f"'{self.query_text}': {len(hits)} matches"
                         + (f", at line {self.match + 1}" if self.match >= 0 else ""))
        self.query_one("#log-status", Static).update(" · ".join(parts))

    def _hits(self) -> list[int]:
        q = self.query_text.lower()
        return [i for i, ln in enumerate(self.lines) if q in ln.lower()] if q else []

    def action_close(self) -> None:
        box = self.query_one("#log-search", Input)
        if not box.has_class("hidden"):
            box.add_class("hidden")
            self.query_one(Log).focus()
            return
        self.app.pop_screen()

    def action_switch(self) -> None:
        self.stream = STREAMS[(STREAMS.index(self.stream) + 1) % len(STREAMS)]
        self._open()

    def action_follow(self) -> None:
        self.follow = not self.follow
        log = self.query_one(Log)
        log.auto_scroll = self.follow
        if self.follow:
            log.scroll_end(animate=False)
        self._status()

    def action_scroll(self, lines: int) -> None:
        self.query_one(Log).scroll_relative(y=lines, animate=False)

    def action_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.remove_class("hidden")
        box.focus()

    @on(Input.Submitted, "#log-search")
    def _search(self, event: Input.Submitted) -> None:
        self.query_text = event.value
        self.match = -1
        self.query_one("#log-search", Input).add_class("hidden")
        self.query_one(Log).focus()
        self.action_next_match()

    def action_next_match(self, direction: int = 1) -> None:
        hits = self._hits()
        if not hits:
            self._status()
            if self.query_text:
                self.notify(f"'{self.query_text}' is not in the loaded lines", severity="warning")
            return
        if direction > 0:
            self.match = next((i for i in hits if i > self.match), hits[0])
        else:
            self.match = next((i for i in reversed(hits) if i < self.match), hits[-1])
        self.follow = False
        log = self.query_one(Log)
        log.auto_scroll = False
        log.scroll_to(y=max(0, self.match - 2), animate=False)
        self._status()
