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
    eng = ScriptedEngine()
    eng._run("2d/0").run_dir = str(run_dir)
    app = FoldwatchApp(eng, poll_interval=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await select(pilot, app, "2d/0")
        await pilot.press("t")
        assert isinstance(app.screen, LogScreen)
        screen = app.screen
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
