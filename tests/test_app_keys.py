"""Each key's outcome: what it does, or why it does nothing, said in a toast."""

from __future__ import annotations

import pytest

from console.clients.tui.app import FoldwatchApp
from console.protocol.model import Decision
from console.clients.tui.screens.confirm import ConfirmScreen
from console.clients.tui.screens.detail import DetailScreen
from console.clients.tui.screens.gpus import GpuScreen
from console.clients.tui.screens.help import HelpScreen
from console.clients.tui.screens.notices import NoticesScreen
from console.clients.tui.screens.results import ResultsScreen
from console.clients.tui.screentext import screen_text
from test_app import select, wait_for
from ui_engine import T0, ScriptedEngine


def said(app, text):
    return lambda: any(text in n for n in app.notices)


@pytest.mark.asyncio
async def test_read_only_refuses_keys_out_loud_and_says_when_supervision_stops():
    eng = ScriptedEngine(read_only=True)
    app = FoldwatchApp(eng, poll_interval=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await select(pilot, app, "2d/0")
        await pilot.press("s")
        await wait_for(pilot, said(app, "read-only: this view only watches (opened with "
                                        "--read-only)"), what="read-only toast")
        assert "READ-ONLY ·" in app.sub_title and "NOT SUPERVISED" not in app.sub_title
        eng.supervisor = ScriptedEngine(supervised=False).supervisor   # the supervisor died
        await wait_for(pilot, said(app, "not supervised since 14:03: runs are not watched"),
                       what="noticed")
        assert app.sub_title.startswith("NOT SUPERVISED · READ-ONLY")
        await pilot.press("K")
        await wait_for(pilot, said(app, "read-only: this view only watches"))
        assert eng.calls == []


@pytest.mark.asyncio
async def test_run_now_with_dead_inputs_says_which_and_starts_nothing():
    eng = ScriptedEngine()
    eng._run("2d/4").state = "failed"
    app = FoldwatchApp(eng, poll_interval=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await select(pilot, app, "2d/0")
        await pilot.press("e")
        await wait_for(pilot, said(app, "crossval-2d cannot run: its inputs 2d/4 (failed) will "
                                        "not complete"), what="refusal")
        await pilot.press("b")                      # find-best needs crossval-2d -> 2d/4
        await wait_for(pilot, said(app, "find-best cannot run: its inputs 2d/4 (failed)"))
        assert eng.calls == []
        await select(pilot, app, "3d_fullres/0")    # 3d folds are on their way: it waits
        await pilot.press("e")
        await wait_for(pilot, lambda: eng.calls == [("stage", "crossval-3d_fullres")])
        await wait_for(pilot, said(app, "crossval-3d_fullres: runs as soon as its inputs are "
                                        "complete"))


@pytest.mark.asyncio
async def test_resume_stop_and_screens_keep_their_word():
    eng = ScriptedEngine()
    app = FoldwatchApp(eng, poll_interval=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await select(pilot, app, "2d/3")
        await pilot.press("r")
        await wait_for(pilot, said(app, "2d/3 is completed; x restarts it from scratch"))
        await select(pilot, app, "2d/0")
        await pilot.press("r")
        await wait_for(pilot, said(app, "2d/0 is running already"))
        await select(pilot, app, "2d/4")             # queued: no SIGTERM talk
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        text = screen_text(app)
        assert "out of the queue" in text and "SIGTERM" not in text
        await pilot.press("q")                       # q answers no, does not quit
        assert app.is_running and not isinstance(app.screen, ConfirmScreen)
        assert eng.calls == []
        for key, screen in (("enter", DetailScreen), ("v", ResultsScreen), ("g", GpuScreen),
                            ("n", NoticesScreen), ("question_mark", HelpScreen)):
            await pilot.press(key)
            await wait_for(pilot, lambda: isinstance(app.screen, screen), what=key)
            await pilot.press("q")                   # q closes the screen, not the console
            await wait_for(pilot, lambda: app.screen is app.screen_stack[0], what=f"{key} q")
            assert app.is_running
        await pilot.press("a")
        await wait_for(pilot, said(app, "bell on failure off"))
        assert app.bell_on is False


@pytest.mark.asyncio
async def test_failure_rings_and_a_stop_from_another_shell_is_toasted():
    eng = ScriptedEngine()
    app = FoldwatchApp(eng, poll_interval=0.1)
    rings = []
    app.bell = lambda: rings.append(1)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        eng._run("2d/0").state, eng._run("2d/0").message = "failed", "exit 3: bad case"
        eng.decisions.append(Decision(T0 + 1, "2d/1", "request", "stop (foldwatch stop)"))
        await wait_for(pilot, said(app, "2d/0 failed: exit 3: bad case"))
        await wait_for(pilot, said(app, "stop 2d/1 requested from another shell"))
        assert rings == [1]
        await pilot.press("n")
        assert "2d/0 failed: exit 3: bad case" in screen_text(app)


@pytest.mark.asyncio
async def test_scratch_asks_and_reports_the_engines_answer():
    eng = ScriptedEngine()
    eng.restart_from_scratch = lambda key: (eng.calls.append(("scratch", key)) or
                                            f"{key} queued from scratch; its old folder is kept "
                                            "as fold_3.old-20261122-180000")
    app = FoldwatchApp(eng, poll_interval=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.snapshot is not None)
        await select(pilot, app, "2d/3")
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        assert "moved aside" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: eng.calls == [("scratch", "2d/3")])
        await wait_for(pilot, said(app, "2d/3 queued from scratch; its old folder is kept as "
                                        "fold_3.old-20261122-180000"), what="engine's answer")
