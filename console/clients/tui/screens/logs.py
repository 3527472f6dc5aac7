"""Log viewer (t): a run's or stage's stdout.log and stderr.log; follows the tail, scrolls,
searches. Only the last WINDOW bytes are loaded when it opens, then what is appended.

Long lines (a traceback's, nnU-Net's plans) wrap at the window's width; `w` switches to one
screen line per log line, scrolled sideways with the arrow keys (ctrl+PgUp/PgDn: a page).
Either way a search finds the log line and scrolls to its first screen line.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from pathlib import Path

from rich.cells import cell_len, chop_cells

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Log, Static

from console.store.logtail import TextTail

MAX_LINES = 20_000
STREAMS = ("stdout", "stderr")
_CONTROL = re.compile("[\u0000-\u0014]")     # what Log itself shows as a replacement mark


def split_lines(lines: list[str]) -> list[str]:
    """Log lines as the viewer counts them: a carriage return (a progress bar redrawing)
    starts another line, as Log itself would split it."""
    out: list[str] = []
    for ln in lines:
        out += ln.splitlines() or [""]
    return out


def screen_lines(line: str, width: int | None) -> list[str]:
    """One log line as screen lines: cut into pieces of `width` cells when wrapping (None:
    the line whole). Never empty: Log drops an empty line, and every log line must keep a
    screen line for the search to find."""
    text = _CONTROL.sub("\ufffd", line.expandtabs())
    if width is None or cell_len(text) <= width:
        return [text or " "]
    return chop_cells(text, width)


class LogScreen(Screen):
    BINDINGS = [Binding("escape,q", "close", "Back", id="back"),
                Binding("tab", "switch", "stdout/stderr"),
                Binding("slash", "search", "Search"),
                Binding("n", "next_match", "Next match"),
                Binding("N", "next_match(-1)", "Previous", show=False),
                Binding("f", "follow", "Follow"),
                Binding("w", "wrap", "Wrap"),
                Binding("j", "scroll(1)", show=False), Binding("k", "scroll(-1)", show=False)]

    def __init__(self, key: str, run_dir: str | None, stream: str = "stdout") -> None:
        super().__init__()
        self.key, self.run_dir, self.stream = key, run_dir, stream
        self.lines: list[str] = []
        self.starts: list[int] = []      # each log line's first screen line in the Log
        self.shown = 0                   # screen lines written to the Log
        self.wrap = True
        self.width: int | None = None    # what the shown lines were wrapped at
        self.tail: TextTail | None = None
        self.query_text = ""
        self.match = -1
        self.follow = True

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="≡")
        yield Static(id="log-status", markup=False)
        yield Log(id="log", auto_scroll=True)     # trimmed here, by log lines
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
        self._redraw()
        self.tail = TextTail(self.path) if self.path else None
        self.refresh_data()

    # -- screen lines ------------------------------------------------------------------------
    def _wrap_width(self) -> int | None:
        if not self.wrap:
            return None
        width = self.query_one(Log).scrollable_content_region.width
        # before the first layout: the window's width less the scrollbar, corrected on resize
        return width if width > 0 else max(20, self.app.size.width - 2)

    def _write(self, lines: list[str]) -> None:
        """Append log lines to the Log as screen lines, keeping where each one starts."""
        out: list[str] = []
        for ln in lines:
            self.starts.append(self.shown + len(out))
            out += screen_lines(ln, self.width)
        self.shown += len(out)
        if out:
            self.query_one(Log).write_lines(out)

    def _redraw(self) -> None:
        """Write every loaded line again (a new width, wrapping switched, lines trimmed),
        keeping the top log line on screen unless following."""
        log = self.query_one(Log)
        top = self._line_at(int(log.scroll_y))
        log.clear()
        self.starts, self.shown = [], 0
        self.width = self._wrap_width()
        log.auto_scroll = self.follow
        self._write(self.lines)
        if not self.follow and self.starts:
            log.scroll_to(y=self.starts[min(top, len(self.starts) - 1)], animate=False)

    def _line_at(self, y: int) -> int:
        """The log line shown on screen line `y`."""
        return max(0, bisect_right(self.starts, y) - 1)

    def on_resize(self) -> None:
        # the first Resize comes before the Log is mounted: _open wraps at the fallback width
        if self.query(Log) and self.wrap and self._wrap_width() != self.width:
            self._redraw()

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
            self._redraw()
        lines = split_lines(lines)
        if lines:
            self.lines += lines
            log.auto_scroll = self.follow
            if len(self.lines) > MAX_LINES:
                # a tenth below the limit, so a busy log is not rewritten on every read
                self.lines = self.lines[-(MAX_LINES - MAX_LINES // 10):]
                self.match = -1
                self._redraw()
            else:
                self._write(lines)
        self._status()

    def _status(self) -> None:
        where = str(self.path) if self.path else "no run folder known for this run"
        parts = [f"{self.stream}: {len(self.lines)} lines"]
        if self.tail is not None and self.tail.skipped:
            parts.append(f"first {self.tail.skipped // 1024} KiB not loaded")
        if self.tail is not None and self.tail.inode is None:
            parts.append("(no such file yet)")
        parts.append("following" if self.follow else "paused (f follows)")
        parts.append("wrapped (w: unwrap)" if self.wrap else "←/→ scroll (w: wrap)")
        if self.query_text:
            hits = self._hits()
            parts.append(f"'{self.query_text}': {len(hits)} matches"
                         + (f", at line {self.match + 1}" if self.match >= 0 else ""))
        parts.append(where)             # last: a long path may take a second line
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

    def action_wrap(self) -> None:
        self.wrap = not self.wrap
        self._redraw()
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
        log.scroll_to(y=max(0, self.starts[self.match] - 2), animate=False)
        self._status()
