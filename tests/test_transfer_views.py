"""Imported folds in every view (issue #20): "imported from HOST, DATE" in the runs table's
note, the run detail, `foldwatch status`'s table and its --json (RunView.origin, which the
engine fills from the fold's origin.json, contracts.origin)."""

from __future__ import annotations

import io
import json
import time

import pytest
from rich.console import Console

from console.clients.text import runs_table, snapshot_json
from console.clients.tui.app import FoldwatchApp
from console.clients.tui.screens.detail import DetailScreen
from console.clients.tui.screentext import screen_text
from console.clients.tui.widgets.runs_table import RunsTable
from console.protocol.vocabulary import cells
from contracts.origin import origin_label, read_origin
from ui_engine import ScriptedEngine
from test_app import select, wait_for

ORIGIN = "bob-ws, 2026-11-22 14:03"


def imported(eng: ScriptedEngine) -> ScriptedEngine:
    run = next(r for r in eng.runs if r.key == "2d/3")
    run.origin = ORIGIN
    return eng


def test_origin_label_from_the_origin_record(tmp_path):
    t = time.mktime((2026, 11, 22, 14, 3, 0, 0, 0, -1))
    (tmp_path / "origin.json").write_text(json.dumps({"trained_on": "bob-ws", "completed": t,
                                                      "packed": t + 60}))
    assert origin_label(read_origin(tmp_path)) == ORIGIN
    assert origin_label({"packed_on": "carol", "imported": t}) == "carol, 2026-11-22 14:03"
    assert origin_label(None) is None and read_origin(tmp_path / "nothing") is None


def test_the_note_and_the_status_table_and_json_say_where_it_was_trained():
    eng = imported(ScriptedEngine())
    snap = eng.poll()
    run = next(r for r in snap.runs if r.key == "2d/3")
    assert cells(run)["note"] == f"imported from {ORIGIN}"
    run.message = "something else"
    assert cells(run)["note"] == f"imported from {ORIGIN}; something else"
    out = io.StringIO()
    Console(file=out, width=400).print(runs_table(snap))
    line = next(l for l in out.getvalue().splitlines() if l.strip("│ ").startswith("2d/3"))
    assert f"imported from {ORIGIN}" in line
    data = snapshot_json(snap)
    assert next(r for r in data["runs"] if r["key"] == "2d/3")["origin"] == ORIGIN
    assert next(r for r in data["runs"] if r["key"] == "2d/2")["origin"] is None


@pytest.mark.asyncio
async def test_the_console_shows_it_in_the_table_and_the_detail():
    eng = imported(ScriptedEngine())
    app = FoldwatchApp(eng, poll_interval=0.1)
    async with app.run_test(size=(160, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        table = app.query_one(RunsTable)
        assert str(table.get_cell("2d/3", "note")) == f"imported from {ORIGIN}"
        await select(pilot, app, "2d/3")
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        await wait_for(pilot, lambda: app.screen.data is not None, what="detail data")
        await pilot.pause(0.1)
        assert f"imported from {ORIGIN} (origin.json in the folder)" in screen_text(app)
