"""The log viewer: opens the tail of a large log, follows appends, searches, switches to
stderr, starts over when the log is truncated; TextTail never reads a log whole."""

from __future__ import annotations

import pytest
from textual.widgets import Log

from console.clients.tui.app import FoldwatchApp
from console.store.logtail import TextTail
from console.clients.tui.screens.logs import LogScreen
from test_app import select, wait_for
from ui_engine import ScriptedEngine


def log_app(run_dir) -> FoldwatchApp:
    """The console on a scripted engine whose run 2d/0 keeps its logs in run_dir."""
    eng = ScriptedEngine()
    eng._run("2d/0").run_dir = str(run_dir)
    return FoldwatchApp(eng, poll_interval=0.2)


async def open_log(pilot, app: FoldwatchApp) -> LogScreen:
    """Select 2d/0 and open its log viewer (`t`)."""
    await wait_for(pilot, lambda: app.snapshot is not None)
    await select(pilot, app, "2d/0")
    await pilot.press("t")
    assert isinstance(app.screen, LogScreen)
    return app.screen


def test_text_tail_reads_only_the_window_then_appends(tmp_path):
    log = tmp_path / "stdout.log"
    log.write_bytes(b"".join(b"line %06d\n" % i for i in range(100_000)))   # 1.2 MB
    tail = TextTail(log, window=4096)
    lines, reset = tail.read()
    assert not reset and lines[-1] == "line 099999" and len(lines) < 400
    assert all(ln.startswith("line ") and len(ln) == 11 for ln in lines)   # no cut first line
    assert tail.skipped >= 1_200_000 - 4096
    with log.open("ab") as f:
        f.write(b"partial")
    assert tail.read() == ([], False)                 # a line without its newline waits
    with log.open("ab") as f:
        f.write(b" done\nnext\n")
    assert tail.read() == (["partial done", "next"], False)
    log.write_bytes(b"fresh\n")                       # truncated / rotated: start over
    assert tail.read() == (["fresh"], True)


@pytest.mark.asyncio
async def test_log_viewer_follows_searches_and_switches_stream(tmp_path):
    run_dir = tmp_path / "fold_0"
    run_dir.mkdir()
    (run_dir / "stdout.log").write_text("".join(f"epoch {e}/8  train_loss 0.{90 - e}\n"
                                                for e in range(1, 4)))
    (run_dir / "stderr.log").write_text("Traceback (most recent call last):\nValueError: bad\n")
    app = log_app(run_dir)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_log(pilot, app)
        await wait_for(pilot, lambda: len(screen.lines) == 3, what="log loaded")
        with (run_dir / "stdout.log").open("a") as f:
            f.write("epoch 4/8  train_loss 0.86  new best EMA pseudo-Dice 0.7\n")
        await wait_for(pilot, lambda: len(screen.lines) == 4, what="appended line followed")
        assert screen.query_one(Log).lines[-1].startswith("epoch 4/8")
        await pilot.press("slash", *"epoch 2", "enter")
        await wait_for(pilot, lambda: screen.match == 1, what="search hit")
        assert not screen.follow                        # a search stops following
        status = str(screen.query_one("#log-status").render())
        assert "'epoch 2': 1 matches, at line 2" in status
        await pilot.press("tab")
        await wait_for(pilot, lambda: screen.stream == "stderr" and screen.lines ==
                       ["Traceback (most recent call last):", "ValueError: bad"],
                       what="stderr")
        await pilot.press("q")
        assert not isinstance(app.screen, LogScreen) and app.is_running


@pytest.mark.asyncio
async def test_log_viewer_wraps_a_300_character_line_and_scrolls_it_sideways(tmp_path):
    """At 80 columns a 300-character line is shown whole, wrapped; `w` makes it one screen
    line that the arrow keys scroll sideways; a search still lands on the right log line."""
    from console.clients.tui.screentext import screen_text
    run_dir = tmp_path / "fold_0"
    run_dir.mkdir()
    long = "".join(f"<{i:02d}>" + "." * 6 for i in range(30))         # 300 characters
    # ten long lines: a search that counted log lines as screen lines would land 30 too high
    lines = [f"line {i}" for i in range(40)] + [long] * 10 + ["after the long line"] + \
        [f"tail {i}" for i in range(40)]
    (run_dir / "stdout.log").write_text("\n".join(lines) + "\n")
    app = log_app(run_dir)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_log(pilot, app)
        await wait_for(pilot, lambda: len(screen.lines) == len(lines), what="log loaded")
        log = screen.query_one(Log)
        width = log.scrollable_content_region.width
        assert 60 <= width < 80
        pieces = log.lines[screen.starts[40]:screen.starts[41]]
        assert "".join(pieces) == long and all(len(p) <= width for p in pieces)
        assert len(pieces) == -(-300 // width) and log.max_scroll_x == 0
        # a search finds the line after the long one, and scrolls to it
        await pilot.press("slash", *"after the", "enter")
        await wait_for(pilot, lambda: screen.match == 50, what="search hit")
        await pilot.pause(0.1)
        assert screen.starts[50] == 40 + 10 * len(pieces)
        assert log.scroll_y == screen.starts[50] - 2
        shown = screen_text(app)
        assert "after the long line" in shown and "<29>......" in shown   # the long line's end
        assert "wrapped (w: unwrap)" in shown
        # unwrapped: one screen line, cut at the edge until scrolled sideways
        await pilot.press("w")
        await wait_for(pilot, lambda: log.lines[40] == long, what="unwrapped")
        await wait_for(pilot, lambda: log.max_scroll_x >= 300 - width, what="scrollable")
        await pilot.press("slash", *"<00>", "enter")
        await wait_for(pilot, lambda: screen.match == 40, what="search hit unwrapped")
        await pilot.pause(0.1)
        assert "<29>" not in screen_text(app) and "←/→ scroll (w: wrap)" in screen_text(app)
        await pilot.press("right", "right")
        await wait_for(pilot, lambda: log.scroll_x == 2, what="scrolled by the arrow key")
        for _ in range(10):             # a page sideways at a time
            if "<29>......" in screen_text(app):
                break
            await pilot.press("ctrl+pagedown")
        assert "<29>......" in screen_text(app), "never scrolled to the line's end"
