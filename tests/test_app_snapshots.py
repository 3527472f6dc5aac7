"""SVG snapshots (pytest-textual-snapshot) of the console with deterministic data."""

from __future__ import annotations

from console.clients.tui.app import FoldwatchApp
from console.clients.tui.screentext import screen_text
from console.clients.tui.widgets.runs_table import RunsTable
from ui_engine import ScriptedEngine


async def _first_snapshot(pilot):
    app = pilot.app
    for _ in range(200):
        if app.snapshot is not None:
            break
        await pilot.pause(0.05)
    await _footer(pilot, "q Quit")


async def _footer(pilot, text):
    """The footer fills in a moment after the bindings: wait for it, not for a fixed time."""
    for _ in range(100):
        await pilot.pause(0.05)
        if text in screen_text(pilot.app):
            return


async def _open_detail(pilot, key: str):
    """The detail screen of the run or stage `key`, once its data and footer are shown."""
    await _first_snapshot(pilot)
    app = pilot.app
    table = app.query_one(RunsTable)
    table.move_cursor(row=[str(k.value) for k in table.rows].index(key))
    await pilot.press("enter")
    for _ in range(200):
        if getattr(app.screen, "data", None) is not None:
            break
        await pilot.pause(0.05)
    await _footer(pilot, "esc Back")


async def _detail(pilot):
    await _open_detail(pilot, "2d/0")


def _app(**kw):
    # a long poll interval: one snapshot, so the screen cannot change mid-capture
    return FoldwatchApp(ScriptedEngine(**kw), title="foldwatch - demo", poll_interval=60)


def test_main_screen_80x24(snap_compare):
    assert snap_compare(_app(), terminal_size=(80, 24), run_before=_first_snapshot)


def test_main_screen_160x48(snap_compare):
    assert snap_compare(_app(), terminal_size=(160, 48), run_before=_first_snapshot)


def test_main_screen_cpu_mode_read_only_80x24(snap_compare):
    assert snap_compare(_app(cpu_mode=True, read_only=True), terminal_size=(80, 24),
                        run_before=_first_snapshot)


def test_detail_screen_100x30(snap_compare):
    assert snap_compare(_app(), terminal_size=(100, 30), run_before=_detail)


async def _late_values(pilot):
    """The first frame, then values that are longer than anything in it (a later poll)."""
    from ui_engine import feed_more
    await _first_snapshot(pilot)
    app = pilot.app
    feed_more(app.engine.runs)
    polls = app.polls
    app.request_poll()
    for _ in range(200):
        if app.polls > polls:
            break
        await pilot.pause(0.05)
    await pilot.pause(0.1)


def test_late_values_are_not_cut_80x24(snap_compare):
    assert snap_compare(_app(), terminal_size=(80, 24), run_before=_late_values)


def test_late_values_are_not_cut_160x48(snap_compare):
    assert snap_compare(_app(), terminal_size=(160, 48), run_before=_late_values)


def test_finished_pipeline_with_outcomes_160x48(snap_compare):
    assert snap_compare(_app(finished=True), terminal_size=(160, 48), run_before=_first_snapshot)


async def _finished_scrolled_to_the_stages(pilot):
    """At 24 rows the stages are below the folds: the cursor on the last row brings them in."""
    await _first_snapshot(pilot)
    table = pilot.app.query_one(RunsTable)
    table.move_cursor(row=table.row_count - 1)
    await pilot.pause(0.1)


def test_finished_stage_rows_show_their_dice_80x24(snap_compare):
    # crossval rows: the configuration's cross-validation Dice in val Dice; find-best and
    # predict: the chosen model in Config, its Dice, the test cases and the test Dice
    assert snap_compare(_app(finished=True), terminal_size=(80, 24),
                        run_before=_finished_scrolled_to_the_stages)


def test_finished_stage_rows_show_their_dice_132x30(snap_compare):
    assert snap_compare(_app(finished=True), terminal_size=(132, 30), run_before=_first_snapshot)


async def _results(pilot):
    await _first_snapshot(pilot)
    await pilot.press("v")
    await _footer(pilot, "esc Back")


def test_results_view_100x30(snap_compare):
    assert snap_compare(_app(finished=True), terminal_size=(100, 30), run_before=_results)


def test_results_view_long_class_names_80x30(snap_compare):
    from ui_engine import brain_results_view
    app = _app(finished=True)
    app.engine.results = brain_results_view()    # grey_matter, white_matter, cerebrospinal_fluid
    assert snap_compare(app, terminal_size=(80, 30), run_before=_results)


async def _late_scrolled(pilot):
    await _late_values(pilot)
    table = pilot.app.query_one(RunsTable)
    for _ in range(200):               # scrolled fully right once the widened columns are laid out
        table.scroll_to(x=table.max_scroll_x, animate=False)
        await pilot.pause(0.05)
        if table.max_scroll_x > 0 and table.scroll_x == table.max_scroll_x:
            break
    await pilot.pause(0.1)


def test_late_values_scrolled_right_keep_config_and_fold_80x24(snap_compare):
    assert snap_compare(_app(), terminal_size=(80, 24), run_before=_late_scrolled)


async def _stage_detail(pilot):
    await _open_detail(pilot, "find-best")


def test_stage_detail_shows_results_and_log_100x30(snap_compare):
    assert snap_compare(_app(finished=True), terminal_size=(100, 30), run_before=_stage_detail)


async def _gpus(pilot):
    await _first_snapshot(pilot)
    await pilot.press("g")
    await _footer(pilot, "esc Back")


def test_gpu_screen_100x30(snap_compare):
    assert snap_compare(_app(), terminal_size=(100, 30), run_before=_gpus)
