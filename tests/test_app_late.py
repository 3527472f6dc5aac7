"""Values that arrive after the first frame are shown whole (the table widens its columns)."""

from __future__ import annotations

import pytest

from console.clients.tui.app import FoldwatchApp
from console.clients.tui.screentext import screen_text
from console.clients.tui.widgets.runs_table import RunsTable
from test_app import select, wait_for
from ui_engine import ScriptedEngine, feed_more


@pytest.mark.asyncio
async def test_late_values_widen_columns_and_stay_whole():
    eng = ScriptedEngine()
    app = FoldwatchApp(eng, poll_interval=60)
    async with app.run_test(size=(200, 50)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        feed_more(eng.runs)
        polls = app.polls
        app.request_poll()
        await wait_for(pilot, lambda: app.polls > polls, what="second snapshot")
        await pilot.pause(0.1)
        text = screen_text(app)
        row = next(line for line in text.splitlines() if " 0 " in line and "2d " in line
                   and "gpu13" in line)
        for value in ("gpu13", "123/1000", "0.739", "0.722", "-0.612", "113.3", "4h12m",
                      "31s"):
            assert value in row, (value, row)
        table = app.query_one(RunsTable)
        note = "blocked: 3d_fullres/4 did not complete; resume it with r"
        assert table.get_cell("2d/4", "note") == note
        assert table.columns["note"].content_width >= len(note)     # scrolls, never cut
        assert table.columns["restarts"].content_width >= 2          # "12"
        assert table.fixed_columns == 2       # Config and Fold stay when scrolling sideways


@pytest.mark.asyncio
async def test_j_k_move_and_o_sorts_the_runs():
    eng = ScriptedEngine()
    app = FoldwatchApp(eng, poll_interval=60)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        table = app.query_one(RunsTable)
        await select(pilot, app, "2d/0")
        await pilot.press("j")
        assert table.selected_key == "2d/1"
        await pilot.press("k", "k")
        assert table.selected_key == "preprocess-3d_fullres"
        await pilot.press("o")                      # by state: the backoff run before running
        await wait_for(pilot, lambda: table.sort_name == "state")
        keys = [str(k.value) for k in table.rows]
        assert keys.index("2d/2") < keys.index("2d/0") < keys.index("2d/4") < keys.index("2d/3")
        assert table.selected_key == "preprocess-3d_fullres"     # the cursor kept its run
        assert any("sorted by state" in n for n in app.notices)
