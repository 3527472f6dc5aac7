"""The cascade end to end through the console engine on the demo data (real trainer):
plan -> preprocess -> 5 lowres folds -> 5 cascade folds -> crossval -> find-best -> predict."""

from __future__ import annotations

import json

import pytest
import yaml

from console.engine.core import Engine
from console.kinds.jobs import build_jobs
from contracts.experiment import load_experiment
from data_helpers import small_demo  # noqa: F401  (fixture)
from engine_helpers import REPO, cpu_sampler, poll_until, stop_and_close

TINY = {"epochs": 2, "iterations_per_epoch": 4, "val_iterations": 1, "batch_size": 2,
        "base_features": 4, "max_features": 16, "num_workers": 0, "tta_mirroring": False,
        "patch_size": [16, 32, 32]}
CONFIGS = {"3d_lowres": {**TINY, "spacing": [3.2, 1.7, 1.7]}, "3d_cascade_fullres": TINY}


def _experiment(tmp_path, dataset) -> str:
    exp = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    exp.update(experiment="casc", dataset=str(dataset), results=str(tmp_path / "results"),
               configurations=CONFIGS)
    exp["devices"] = {"cpu_slots": 2, "cpu_threads_per_run": 1}
    path = tmp_path / "casc.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def test_cascade_folds_wait_for_every_lowres_fold(tmp_path):
    exp = load_experiment(_experiment(tmp_path, tmp_path / "data"))
    jobs = {j.key: j for j in build_jobs(exp)}
    lowres = {f"3d_lowres/{k}" for k in range(5)}
    for k in range(5):
        deps = set(jobs[f"3d_cascade_fullres/{k}"].depends_on)
        assert deps == lowres | {"preprocess-3d_cascade_fullres"}
        assert set(jobs[f"3d_lowres/{k}"].depends_on) == {"preprocess-3d_lowres"}


@pytest.mark.slow
def test_tiny_cascade_end_to_end_through_the_engine(tmp_path, small_demo, monkeypatch):  # noqa: F811
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("FOLDWATCH_TRAINER", raising=False)
    eng = Engine(_experiment(tmp_path, small_demo), sampler=cpu_sampler())
    seen_waiting = set()

    def watch(snap):
        for r in snap.runs:
            if r.key.startswith("3d_cascade_fullres/") and (r.message or "").startswith(
                    "waiting for 3d_lowres/"):
                seen_waiting.add(r.key)
        return snap.finished
    try:
        snap = poll_until(eng, watch, timeout=1800, every=0.2)
        assert snap.succeeded, [(r.key, r.state, r.message) for r in snap.runs]
    finally:
        stop_and_close(eng)
    assert len(seen_waiting) == 5                     # every cascade row said what it waits for
    lay = eng.layout
    best = json.loads(lay.best_configuration.read_text())
    cands = best["candidates"]
    assert {"3d_lowres", "3d_cascade_fullres", "3d_cascade_fullres+3d_lowres"} == set(cands)
    for k in range(5):
        assert (lay.preprocessed("3d_cascade_fullres") / "previous_stage").is_dir()
        assert (lay.validation("3d_cascade_fullres", k) / "summary.json").exists()
    preds = sorted(p.name for p in lay.predictions.glob("*.nii.gz"))
    assert len(preds) == 2
    summary = json.loads((lay.predictions / "summary.json").read_text())
    assert summary["foreground_mean"]["Dice"] is not None


def test_engine_holds_cascade_folds_until_every_lowres_fold_is_done(tmp_path, monkeypatch):
    """The console engine over the scripted stand-in trainer: the cascade rows say what they
    wait for, and none starts before the slowest lowres fold has finished."""
    from contracts.jsonio import iter_jsonl
    from engine_helpers import use_fake_trainer, write_experiment
    use_fake_trainer(monkeypatch, tmp_path, {"3d_lowres/2": {"rate": 0.4}, "*": {"rate": 0.02}})
    path = write_experiment(tmp_path, folds=range(5),
                            configurations=("3d_lowres", "3d_cascade_fullres"),
                            pipeline={"evaluate": False, "find_best": False,
                                      "postprocess": False, "predict_test": False})
    eng = Engine(path, sampler=cpu_sampler())
    waiting = {}

    def watch(snap):
        for r in snap.runs:
            if r.key.startswith("3d_cascade_fullres/") and r.state == "queued":
                waiting.setdefault(r.key, set()).add(r.message)
        return snap.finished
    try:
        snap = poll_until(eng, watch, timeout=120)
        assert snap.succeeded, [(r.key, r.state, r.message) for r in snap.runs]
    finally:
        eng.stop_all()
        eng.close()
    assert all("waiting for 3d_lowres/2" in msgs for msgs in waiting.values()), waiting
    assert len(waiting) == 5

    def times(cfg, event):
        return [e["t"] for k in range(5)
                for e in iter_jsonl(eng.layout.fold_dir(cfg, k) / "metrics.jsonl")
                if e["event"] == event]
    assert max(times("3d_lowres", "end")) <= min(times("3d_cascade_fullres", "start"))
