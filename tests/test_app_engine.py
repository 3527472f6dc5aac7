"""The console over the REAL engine and the scripted stand-in trainer: a crash while the app
is open is noticed, restarted by the watchdog, shown, and the run completes."""

from __future__ import annotations

import pytest

from console.clients.tui.app import FoldwatchApp
from console.engine.core import Engine
from console.clients.tui.screentext import screen_text
from console.clients.tui.widgets.runs_table import RunsTable
from engine_helpers import calls, cpu_sampler, use_fake_trainer, write_experiment


@pytest.mark.asyncio
async def test_crash_is_restarted_while_the_app_is_open(tmp_path, monkeypatch):
    use_fake_trainer(monkeypatch, tmp_path, {
        "2d/0": [{"then": "sigkill", "at": 2, "rate": 0.05}, {"rate": 0.05}],
        "*": {"rate": 0.02}})
    path = write_experiment(tmp_path, folds=(0,), epochs=4, pipeline={
        "evaluate": False, "find_best": False, "postprocess": False, "predict_test": False})
    engine = Engine(path, sampler=cpu_sampler())
    app = FoldwatchApp(engine, poll_interval=0.1)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            table = app.query_one(RunsTable)
            seen: set[str] = set()
            for _ in range(600):                      # up to ~30 s on a busy machine
                await pilot.pause(0.05)
                if "2d/0" in table.rows:
                    seen.add(str(table.get_cell("2d/0", "state")))
                if app.snapshot and app.snapshot.finished:
                    break
            snap = app.snapshot
            assert snap.finished and snap.succeeded, [(r.key, r.state, r.message)
                                                      for r in snap.runs]
            notices = list(app.notices)
            assert any(n.startswith("2d/0 restarted (attempt 1)") for n in notices), notices
            assert "2d/0 completed" in notices
            assert str(table.get_cell("2d/0", "state")) == "completed"
            assert str(table.get_cell("2d/0", "restarts")) in ("0", "1")  # reset after an epoch
            assert {"running", "completed"} <= seen
            # the detail view reads the real run's history, stderr and decisions
            table.move_cursor(row=[str(k.value) for k in table.rows].index("2d/0"))
            await pilot.press("enter")
            for _ in range(200):
                if getattr(app.screen, "data", None) is not None:
                    break
                await pilot.pause(0.05)
            assert [p.epoch for p in app.screen.data.history] == [0, 1, 2, 3]
            text = screen_text(app)
            assert "restart" in text and "Loss per epoch" in text
        argvs = [c["argv"] for c in calls(engine.layout.fold_dir("2d", 0))]
        assert len(argvs) == 2 and "--resume" in argvs[1]
        # a second console joining read-only: the real snapshot hides every changing action
        viewer = Engine(path, read_only=True, sampler=cpu_sampler())
        try:
            app2 = FoldwatchApp(viewer, poll_interval=0.1)
            async with app2.run_test(size=(80, 24)) as pilot:
                for _ in range(200):
                    if app2.snapshot is not None:
                        break
                    await pilot.pause(0.05)
                assert app2.snapshot.read_only and "READ-ONLY" in app2.sub_title
                assert not app2.check_action("stop", ()) and not app2.check_action("launch", ())
                assert app2.check_action("detail", ())
        finally:
            viewer.close()
    finally:
        engine.stop_all()
        engine.close()
