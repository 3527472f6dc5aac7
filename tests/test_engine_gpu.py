"""The engine on (scripted) GPUs: placement, foreign processes, a lost GPU, chaos mode."""

from __future__ import annotations

import random

from console.engine.core import Engine
from console.gpu.nvml import NvmlSampler
from engine_helpers import (FakeNvml, actions, calls, cpu_sampler, gpu, poll_until, run_state,
                            use_fake_trainer, write_experiment)

NO_STAGES = {"evaluate": False, "find_best": False, "postprocess": False, "predict_test": False}


def test_runs_go_to_free_gpus_only(tmp_path, monkeypatch):
    use_fake_trainer(monkeypatch, tmp_path, {"*": {"rate": 0.1}})
    exp = write_experiment(tmp_path, folds=(0, 1), pipeline=NO_STAGES,
                           devices={"runs_per_gpu": 1, "min_free_vram_gb": 4})
    nv = FakeNvml(devices=[gpu("A", procs=[(999999, 800)]), gpu("B")])
    eng = Engine(exp, sampler=NvmlSampler(nv, interval=0.02))
    try:
        most = 0

        def check(s):
            nonlocal most
            active = [r for r in s.runs if r.state in ("starting", "running") and r.kind == "fold"]
            most = max(most, len(active))
            assert all(r.device == "gpu1" for r in active)
            return s.finished

        snap = poll_until(eng, check)
        assert snap.succeeded and not snap.cpu_mode and most == 1
        assert [g.processes[0].run_key for g in snap.gpus[:1]] == [None]   # foreign
        for k in (0, 1):
            c = calls(eng.layout.fold_dir("2d", k))
            assert c[0]["env"]["CUDA_VISIBLE_DEVICES"] == "1"
        assert calls(eng.layout.stage_dir("plan"))[0]["env"]["CUDA_VISIBLE_DEVICES"] == ""
    finally:
        eng.close()


def test_lost_gpu_reschedules_its_run(tmp_path, monkeypatch):
    use_fake_trainer(monkeypatch, tmp_path, {"*": {"rate": 0.3}})
    exp = write_experiment(tmp_path, folds=(0,), pipeline=NO_STAGES, epochs=6)
    nv = FakeNvml(devices=[gpu("A", procs=[(999999, 800)]), gpu("B")])
    eng = Engine(exp, sampler=NvmlSampler(nv, interval=0.02))
    try:
        poll_until(eng, lambda s: run_state(s, "2d/0") == "running"
                   and eng.runs["2d/0"].metrics.epoch == 1)
        assert eng.runs["2d/0"].device == "gpu1"
        nv.devices[0]["procs"] = []                  # the foreign job ended ...
        nv.devices[1]["lost"] = True                 # ... and GPU 1 fell off the bus
        snap = poll_until(eng, lambda s: s.finished)
        assert snap.succeeded and snap.gpus[1].lost
        assert "gpu_lost" in actions(eng, "2d/0") and "reschedule" in actions(eng, "2d/0")
        c = calls(eng.layout.fold_dir("2d", 0))
        assert [x["env"]["CUDA_VISIBLE_DEVICES"] for x in c] == ["1", "0"]
        assert "--resume" in c[1]["argv"]
        assert eng.runs["2d/0"].total_restarts == 0  # not the run's fault
    finally:
        eng.close()


def test_chaos_mode_kills_and_the_watchdog_recovers(tmp_path, monkeypatch):
    use_fake_trainer(monkeypatch, tmp_path, {"*": {"rate": 0.3}})
    exp = write_experiment(tmp_path, folds=(0,), pipeline=NO_STAGES, epochs=8,
                           watchdog={"max_restarts": 20})
    eng = Engine(exp, sampler=cpu_sampler(), chaos_every_s=2.0, rng=random.Random(1))
    try:
        snap = poll_until(eng, lambda s: s.finished)
        assert snap.succeeded
        acts = actions(eng, "2d/0")
        assert "chaos" in acts and "restart" in acts
    finally:
        eng.close()
