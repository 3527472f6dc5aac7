"""Run-now priority: the stage and what it waits for jump the queue, nothing else moves."""

from __future__ import annotations

from dataclasses import dataclass

from console.engine.priority import boosted, in_priority


@dataclass
class R:
    key: str
    state: str = "queued"
    run_now: bool = False


def test_run_now_boosts_the_stage_and_its_missing_inputs_only():
    deps = {"crossval-2d": ["2d/0", "2d/1"], "2d/0": ["pre-2d"], "2d/1": ["pre-2d"],
            "3d/0": ["pre-3d"], "pre-2d": [], "pre-3d": []}
    runs = {k: R(k) for k in ["pre-2d", "pre-3d", "3d/0", "2d/0", "2d/1", "crossval-2d"]}
    runs["pre-2d"].state = runs["pre-3d"].state = "completed"
    runs["2d/0"].state = "completed"
    assert boosted(runs, deps.get) == set()
    runs["crossval-2d"].run_now = True
    b = boosted(runs, deps.get)
    assert b == {"crossval-2d", "2d/1"}
    ready = [runs["3d/0"], runs["2d/1"]]
    assert [r.key for r in in_priority(ready, b)] == ["2d/1", "3d/0"]
