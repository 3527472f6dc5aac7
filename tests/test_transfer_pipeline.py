"""Two machines without a shared disk, one experiment (issue #20), with the real trainer: the
same experiment file trains folds 0-1 in one results folder and 2-4 in another (each folder
with its own copy of the dataset, planned on its own), the second packs its folds, the first
imports them, and the first's pipeline finishes: cross-validation, find-best, prediction. The
cross-validation summary is the one a single results folder holding the same five fold folders
gives, fold for fold."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from console.clients.cli.main import main as foldwatch
from console.engine.core import Engine
from contracts.origin import read_origin
from engine_helpers import REPO, cpu_sampler
from nnunet_fixture import DATASET, make_tiny_dataset

pytestmark = pytest.mark.skipif(importlib.util.find_spec("trainer.evaluation.metrics") is None,
                                reason="needs the trainer's evaluation")

TINY = {"2d": {"patch_size": "auto", "batch_size": 2, "epochs": 1, "iterations_per_epoch": 2,
               "val_iterations": 1, "base_features": 4, "max_features": 8, "num_workers": 0,
               "tta_mirroring": False}}


def machine(folder: Path) -> Path:
    """The experiment file and a dataset of its own (10 training cases, 2 test images)."""
    make_tiny_dataset(folder / "data", cases=10)
    exp = {"experiment": "team", "dataset": f"data/{DATASET}", "results": "results",
           "configurations": TINY, "devices": {"cpu_slots": 1, "cpu_threads_per_run": 1},
           "previews": {"enabled": False},
           "watchdog": {"backoff_initial_s": 0.5, "backoff_max_s": 1}}
    path = folder / "team.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def no_failure(*snaps) -> None:
    failed = [(r.key, r.message) for s in snaps for r in s.runs if r.state == "failed"]
    assert not failed, failed


def tree_digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def state(snap, key: str) -> str:
    return next(r.state for r in snap.runs if r.key == key)


@pytest.mark.timeout(900)
def test_two_results_folders_pack_import_and_the_pipeline_finishes(tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("FOLDWATCH_PROGRESS_PLOT", "0")
    monkeypatch.delenv("FOLDWATCH_TRAINER", raising=False)
    exp_a, exp_b = machine(tmp_path / "alice"), machine(tmp_path / "bob")
    mine, theirs = ["2d/0", "2d/1"], ["2d/2", "2d/3", "2d/4"]
    a = Engine(exp_a, runs=mine, sampler=cpu_sampler())
    try:
        b = Engine(exp_b, runs=theirs, sampler=cpu_sampler())
        try:
            deadline = time.monotonic() + 600
            while True:
                sa, sb = a.poll(), b.poll()
                no_failure(sa, sb)
                if all(state(sa, k) == "completed" for k in mine) and \
                        all(state(sb, k) == "completed" for k in theirs):
                    break
                assert time.monotonic() < deadline, [(r.key, r.state, r.message)
                                                     for r in sa.runs + sb.runs]
                time.sleep(0.2)
            # alice's stages wait for bob's folds, saying so; nothing of bob's runs at alice's
            cv = next(r for r in sa.runs if r.key == "crossval-2d")
            assert cv.state == "queued" and "waits for 2d/2" in cv.message
            assert "foldwatch import" in next(r for r in sa.runs if r.key == "2d/3").message
        finally:
            b.close()
        lay_a, lay_b = a.layout, b.layout
        assert not lay_a.fold_dir("2d", 3).exists()

        out = tmp_path / "bob-folds.tar"
        assert foldwatch(["pack", str(exp_b), "--runs", ",".join(theirs), "-o", str(out)]) == 0
        assert foldwatch(["import", str(exp_a), str(out)]) == 0
        said = capsys.readouterr().out
        assert "imported 2d/2, 2d/3, 2d/4" in said and "trained on" in said

        # the imported folds are bob's folders, byte for byte, plus their origin
        for k in (2, 3, 4):
            got = tree_digests(lay_a.fold_dir("2d", k))
            origin = json.loads((lay_a.fold_dir("2d", k) / "origin.json").read_text())
            del got["origin.json"]
            sent = {n: d for n, d in tree_digests(lay_b.fold_dir("2d", k)).items()
                    if n not in ("run.lock",) and not n.startswith("checkpoints/latest")}
            assert got == sent
            assert origin["source"]["kind"] == "foldwatch-archive"
            assert origin["trained_on"] and read_origin(lay_a.fold_dir("2d", k))["key"] == f"2d/{k}"

        # alice's own pipeline takes it from there: crossval, find-best, predict
        deadline = time.monotonic() + 600
        while not (snap := a.poll()).finished:
            no_failure(snap)
            assert time.monotonic() < deadline, [(r.key, r.state, r.message) for r in snap.runs]
            time.sleep(0.2)
        assert snap.succeeded, [(r.key, r.state, r.message) for r in snap.runs]
        assert lay_a.best_configuration.exists()
        assert len(list(lay_a.predictions.glob("tiny_test_*.nii.gz"))) == 2
    finally:
        a.close()

    # the same five fold folders in one results folder give the same cross-validation summary
    single = tmp_path / "single"
    shutil.copytree(tmp_path / "alice", single, ignore=shutil.ignore_patterns("console",
                                                                            "stages", "crossval"))
    for k in (2, 3, 4):
        shutil.rmtree(single / "results" / "team" / "2d" / f"fold_{k}")
        shutil.copytree(lay_b.fold_dir("2d", k), single / "results" / "team" / "2d" / f"fold_{k}")
    r = subprocess.run([sys.executable, "-m", "trainer", "crossval", "--experiment",
                        str(single / "team.yaml"), "--configuration", "2d"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    here = json.loads((lay_a.crossval("2d") / "summary.json").read_text())
    there = json.loads((single / "results" / "team" / "2d" / "crossval" / "summary.json").read_text())
    assert [c["case"] for c in here["metric_per_case"]] == [c["case"] for c in there["metric_per_case"]]
    for k in range(5):
        assert [c for c in here["metric_per_case"] if c["fold"] == k] == \
            [c for c in there["metric_per_case"] if c["fold"] == k], f"fold {k}"
    assert here == there
