"""Pilot tests of the console app over a scripted engine (and one over the real engine)."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from console.clients.tui.app import FoldwatchApp, describe_changes
from console.protocol.model import RunView, Snapshot
from console.clients.tui.screens.confirm import ConfirmScreen
from console.clients.tui.screens.detail import DetailScreen
from console.clients.tui.screens.help import HelpScreen
from console.clients.tui.screens.launch import LaunchScreen
from console.clients.tui.screentext import screen_text
from console.clients.tui.widgets.runs_table import RunsTable
from ui_engine import ScriptedEngine

async def wait_for(pilot, cond, timeout=10.0, what="condition"):
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def rows(app) -> list[str]:
    table = app.query_one(RunsTable)
    return [str(k.value) for k in table.rows]


async def select(pilot, app, key):
    table = app.query_one(RunsTable)
    table.move_cursor(row=rows(app).index(key))
    await pilot.pause()
    assert table.selected_key == key


@pytest.mark.asyncio
async def test_launch_dialog_shows_what_runs_and_ticks_only_what_it_adds():
    eng = ScriptedEngine()
    eng._run("2d/4").state = "stopped"
    eng._run("3d_fullres/2").state = "failed"
    app = FoldwatchApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, what="first snapshot")
        await pilot.press("l")
        assert isinstance(app.screen, LaunchScreen)
        text = screen_text(app)
        assert "0:run  1:run  2:run  3:done  4:stopped" in text
        assert "2:failed" in text
        assert "Enter queues: 2d/4, 3d_fullres/2" in text
        await pilot.press("enter")
        await wait_for(pilot, lambda: eng.calls, what="launch call")
        # only the stopped and failed folds were pre-ticked; lost gpu2 not offered
        assert eng.calls == [("launch", ["2d", "3d_fullres"], [2, 4], [0, 1])]
        await wait_for(pilot, lambda: any("queued 2 runs: 2d/4, 3d_fullres/2" in n
                                          for n in app.notices), what="what it added")
        assert not isinstance(app.screen, LaunchScreen)


@pytest.mark.asyncio
async def test_launch_dialog_with_nothing_new_says_so():
    eng = ScriptedEngine(cpu_mode=True)
    app = FoldwatchApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None, what="first snapshot")
        await pilot.press("l")
        await pilot.press("space", "tab", "tab", "space", "enter")   # 2d fold 0: on its way
        await wait_for(pilot, lambda: any("nothing new to launch" in n for n in app.notices))
        assert isinstance(app.screen, LaunchScreen) and eng.calls == []


@pytest.mark.asyncio
async def test_launch_dialog_escape_launches_nothing():
    eng = ScriptedEngine(cpu_mode=True)
    app = FoldwatchApp(eng)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("l")
        assert "CPU mode: 3 slots" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert eng.calls == [] and not isinstance(app.screen, LaunchScreen)


@pytest.mark.asyncio
async def test_stop_asks_first_and_only_yes_stops():
    eng = ScriptedEngine()
    app = FoldwatchApp(eng, poll_interval=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await select(pilot, app, "2d/0")
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause(0.2)
        assert eng.calls == []
        await pilot.press("s")
        await pilot.press("enter")          # focus is on "No": Enter is the safe answer
        await pilot.pause(0.2)
        assert eng.calls == []
        await pilot.press("s", "y")
        await wait_for(pilot, lambda: eng.calls == [("stop", "2d/0")], what="stop call")
        table = app.query_one(RunsTable)
        await wait_for(pilot, lambda: str(table.get_cell("2d/0", "state")) == "stopped",
                       what="row updated in place")
        assert table.selected_key == "2d/0"        # the cursor stayed on the run


@pytest.mark.asyncio
async def test_detail_view_shows_this_runs_curves_files_and_decisions():
    eng = ScriptedEngine()
    app = FoldwatchApp(eng, poll_interval=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await select(pilot, app, "2d/0")
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        await wait_for(pilot, lambda: app.screen.data is not None, what="detail data")
        polls = app.polls
        await wait_for(pilot, lambda: app.polls >= polls + 2, what="snapshots behind the detail")
        assert isinstance(app.screen, DetailScreen) and app.is_running
        await pilot.pause(0.1)
        text = screen_text(app)
        assert "epoch 3/8" in text and "Loss per epoch" in text
        assert "val Dice 0.650  EMA 0.630  best EMA 0.670  per class organ:0.900  lesion:0.250" \
            in text
        assert "epoch time 1m35s  data wait 8%  peak memory 10.0G  samples/s 41.5" in text
        assert "folder /exp/2d/fold_0" in text
        assert "latest.pt  30s ago" in text
        assert "[2d/0] epoch 3: loss ok" in text
        assert "checkpoint: epoch 3 saved" in text
        assert "exit -9" not in text               # 2d/2's decision is not shown here
        assert [p.epoch for p in app.screen.data.history] == [0, 1, 2]
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)


@pytest.mark.asyncio
async def test_read_only_hides_every_changing_action():
    eng = ScriptedEngine(read_only=True)
    app = FoldwatchApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await select(pilot, app, "2d/0")
        for action in ("launch", "stop", "kill", "resume", "scratch", "watchdog", "crossval",
                       "find_best", "predict", "quit_stop_all"):
            assert app.check_action(action, ()) is False, action
        assert app.check_action("detail", ()) and app.check_action("filter", ())
        await pilot.press("l", "s", "k", "r", "x", "w", "e", "b", "p")
        await pilot.pause(0.2)
        assert eng.calls == [] and app.screen is app.screen_stack[0]
        text = screen_text(app)
        assert "Launch" not in text and "Stop" not in text and "READ-ONLY" in text
        assert "Help" in text and "Quit" in text
        await pilot.press("enter")                 # looking is still allowed
        assert isinstance(app.screen, DetailScreen)


@pytest.mark.asyncio
async def test_palette_offers_only_allowed_actions():
    from console.clients.tui.app import FoldwatchCommands
    for read_only, expect_stop in ((False, True), (True, False)):
        app = FoldwatchApp(ScriptedEngine(read_only=read_only))
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: app.snapshot is not None)
            await select(pilot, app, "2d/0")
            provider = FoldwatchCommands(app.screen)
            names = [c[1] for c in provider._commands()]
            assert ("stop" in names) is expect_stop and "help" in names
            assert "resume" not in names                 # 2d/0 is running: nothing to resume
            await select(pilot, app, "2d/3")             # completed: no stop, no kill
            names = [c[1] for c in provider._commands()]
            assert "stop" not in names and "kill" not in names and "detail" in names


@pytest.mark.asyncio
async def test_filter_narrows_rows_and_escape_restores():
    eng = ScriptedEngine()
    app = FoldwatchApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        total = len(rows(app))
        assert total == 16
        await pilot.press("slash")
        assert app.focused is app.query_one("#filter", Input)
        await pilot.press(*"3d run")
        await pilot.pause(0.1)
        assert rows(app) == ["3d_fullres/0"]
        await pilot.press("enter")                 # back to the table, filter kept
        await pilot.pause(0.6)                     # a poll or so later still filtered
        assert rows(app) == ["3d_fullres/0"]
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert len(rows(app)) == total


@pytest.mark.asyncio
async def test_slow_engine_does_not_freeze_keys():
    eng = ScriptedEngine(poll_delay=4.0)      # long enough for the keys on a loaded machine
    app = FoldwatchApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, eng.in_poll.is_set, what="poll in flight")
        await pilot.press("question_mark")
        # the key was handled while the engine was still inside its first poll()
        assert isinstance(app.screen, HelpScreen)
        assert eng.in_poll.is_set() and eng.polls == 0
        await pilot.press("escape", "slash", *"2d")
        assert app.query_one("#filter", Input).value == "2d" and eng.polls == 0
        await wait_for(pilot, lambda: app.snapshot is not None, timeout=30, what="slow snapshot")
        assert rows(app) and all(k.startswith("2d") or "2d" in k for k in rows(app))
        assert eng.polls == 1      # ticks during a slow poll are skipped, not queued


@pytest.mark.asyncio
async def test_poll_error_is_a_notification_not_an_exit():
    eng = ScriptedEngine(fail_polls=1)
    app = FoldwatchApp(eng, poll_interval=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: any("disk full" in n for n in app.notices),
                       what="error notification")
        await wait_for(pilot, lambda: app.snapshot is not None, what="recovery")
        assert app.is_running


@pytest.mark.asyncio
async def test_quit_leaves_runs_and_shift_q_asks_before_stopping_all():
    eng = ScriptedEngine()
    app = FoldwatchApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("Q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.press("q")
    assert app.quit_mode == "leave" and app.return_value == "leave"
    assert eng.calls == []
    app = FoldwatchApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("Q", "y")
    assert app.quit_mode == "stop-all"


@pytest.mark.asyncio
async def test_watchdog_toggle_and_stage_now():
    eng = ScriptedEngine()
    app = FoldwatchApp(eng, poll_interval=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("w")
        await wait_for(pilot, lambda: "watchdog OFF" in app.sub_title, what="watchdog off")
        await select(pilot, app, "3d_fullres/0")
        await pilot.press("e", "b", "p")
        await wait_for(pilot, lambda: len(eng.calls) == 4)
        assert eng.calls == [("watchdog", False), ("stage", "crossval-3d_fullres"),
                             ("stage", "find-best"), ("stage", "predict")]


def test_no_color_is_honoured(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert FoldwatchApp(ScriptedEngine()).no_color


def _snap(runs):
    return Snapshot(time=0, runs=runs, gpus=[], cpu_mode=True, cpu_slots=2, nvml_message=None,
                    watchdog_enabled=True, read_only=False, finished=False, succeeded=False)


def test_notifications_for_restarts_failures_completions():
    a = [RunView("2d/0", "fold", "2d/0", "running"), RunView("2d/1", "fold", "2d/1", "running"),
         RunView("2d/2", "fold", "2d/2", "running")]
    b = [RunView("2d/0", "fold", "2d/0", "backoff", restarts=1, message="exit -9"),
         RunView("2d/1", "fold", "2d/1", "failed", message="exit 3: dataset"),
         RunView("2d/2", "fold", "2d/2", "completed")]
    assert describe_changes(None, _snap(b)) == []
    assert describe_changes(_snap(a), _snap(b)) == [
        ("2d/0 exited: exit -9; the watchdog restarts it after a backoff", "warning"),
        ("2d/1 failed: exit 3: dataset", "error"), ("2d/2 completed", "information")]
    assert describe_changes(_snap(b), _snap(b)) == []
    c = [RunView("2d/0", "fold", "2d/0", "starting", restarts=1)]
    assert describe_changes(_snap(b[:1]), _snap(c)) == [("2d/0 restarted (attempt 1)",
                                                         "information")]


@pytest.mark.asyncio
async def test_palette_runs_an_action_and_engine_errors_are_notified():
    eng = ScriptedEngine()
    app = FoldwatchApp(eng, poll_interval=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await pilot.press("ctrl+p")
        await pilot.press(*"toggle the watchdog")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: eng.calls == [("watchdog", False)], what="palette action")
        eng.read_only = True                       # the engine refuses; the app must survive
        await select(pilot, app, "2d/0")
        app.call_engine("resuming 2d/0", lambda: eng.resume("2d/0"))
        await wait_for(pilot, lambda: any("'resuming 2d/0' failed" in n for n in app.notices),
                       what="error notification")
        assert app.is_running


@pytest.mark.asyncio
async def test_kill_on_a_run_that_is_not_running_does_nothing():
    eng = ScriptedEngine()
    app = FoldwatchApp(eng)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await select(pilot, app, "2d/3")
        await pilot.press("K")
        assert not isinstance(app.screen, ConfirmScreen)
        await wait_for(pilot, lambda: any("2d/3 is completed: no process to kill" in n
                                          for n in app.notices), what="why not")
        await select(pilot, app, "2d/1")
        await pilot.press("K", "y")
        await wait_for(pilot, lambda: eng.calls == [("kill", "2d/1")], what="kill call")


def test_run_app_passes_mouse_and_says_runs_keep_running(monkeypatch, capsys):
    import console.clients.tui.app as app_mod
    seen = {}

    def fake_run(self, **kw):             # no terminal here: record how the app was started
        seen.update(kw)
        self.snapshot = ScriptedEngine().poll()
        self.quit_mode = "leave"

    monkeypatch.setattr(app_mod.FoldwatchApp, "run", fake_run)
    assert app_mod.run_app(ScriptedEngine(), title="t") == 0
    assert seen == {"mouse": False}
    out = capsys.readouterr().out
    assert ("supervision continues (pid 4242); `foldwatch up` to reopen, `foldwatch down` to "
            "stop supervising") in out
    app_mod.run_app(ScriptedEngine(), title="t", mouse=True)
    assert seen == {"mouse": True}


def test_quitting_at_the_end_prints_where_the_results_are(monkeypatch, capsys):
    import console.clients.tui.app as app_mod

    def fake_run(self, **kw):
        self.snapshot = ScriptedEngine(finished=True).poll()
        self.quit_mode = "leave"

    monkeypatch.setattr(app_mod.FoldwatchApp, "run", fake_run)
    app_mod.run_app(ScriptedEngine(finished=True), title="t")
    out = capsys.readouterr().out
    assert "Results in /exp/results/demo" in out
    assert "Chosen model: 2d + 3d_fullres (fg Dice 0.949; * above)" in out
    assert "predictions: /exp/results/demo/predictions" in out
