"""Run-now priority: the stage and what it waits for jump the queue, nothing else moves."""

from __future__ import annotations

from console.engine.runstate import RunState as S
from console.engine.table import RunTable
from console.kinds.jobs import Job


def test_run_now_boosts_the_stage_and_its_missing_inputs_only(tmp_path):
    deps = {"pre-2d": (), "pre-3d": (), "3d/0": ("pre-3d",), "2d/0": ("pre-2d",),
            "2d/1": ("pre-2d",), "crossval-2d": ("2d/0", "2d/1")}
    runs = RunTable([Job(k, "stage" if "/" not in k else "fold", "x", tmp_path / k.replace("/", "_"),
                         depends_on=d) for k, d in deps.items()])
    for r in runs:
        r.wanted = True
    for k in ("pre-2d", "pre-3d", "2d/0"):
        runs[k].restore(S.COMPLETED)
    assert runs.boosted() == set()
    assert [r.key for r in runs.ready(0.0)] == ["3d/0", "2d/1"]        # the experiment's order
    runs["crossval-2d"].run_now = True
    assert runs.boosted() == {"crossval-2d", "2d/1"}
    assert [r.key for r in runs.ready(0.0)] == ["2d/1", "3d/0"]        # its input goes first
