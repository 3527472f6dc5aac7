"""The Results view read back from what the real crossval / find-best stages wrote."""

from __future__ import annotations

import argparse
import json

import numpy as np

from console.clients.text import results_lines
from console.engine.results import ResultsReader, stage_outcome
from contracts.experiment import load_experiment
from pipeline_fixture import reference, write_experiment, write_fold_outputs
from trainer.commands import crossval, find_best


def test_results_from_real_crossval_and_find_best(tmp_path):
    exp_path, ids = write_experiment(tmp_path)
    exp = load_experiment(exp_path)
    root = exp.layout.root
    reader = ResultsReader(exp.layout, list(exp.configurations))
    assert reader.read().empty and "no results yet" in "\n".join(results_lines(reader.read()))
    splits = json.loads((root / "splits.json").read_text())
    refs = {c: reference(i) for i, c in enumerate(ids)}
    wrong = {c: np.where(refs[c] == 2, 1, refs[c]) for c in ids}   # misses the lesion
    for k in range(5):
        for cfg, bad in (("2d", 0), ("3d_fullres", 1)):
            outs = {c: ((wrong[c], 0.4) if ids.index(c) % 2 == bad else (refs[c], 0.9))
                    for c in splits[k]["val"]}
            write_fold_outputs(root, cfg, k, outs, refs)
    (root / "fingerprint.json").write_text(json.dumps(
        {"labels": {"background": 0, "organ": 1, "lesion": 2}}))
    for cfg in ("2d", "3d_fullres"):
        assert crossval.run(argparse.Namespace(experiment=exp_path, configuration=cfg)) == 0
    rv = reader.read()
    assert [s.name for s in rv.configurations] == ["2d", "3d_fullres"]
    assert rv.configurations[0].per_class["lesion"] == 0.5
    assert rv.configurations[0].cases == len(ids)
    assert stage_outcome("crossval-2d", rv) == "fg Dice 0.747 (organ 0.995, lesion 0.500)"
    assert stage_outcome("find-best", rv) is None
    assert find_best.run(argparse.Namespace(experiment=exp_path)) == 0
    rv = reader.read()
    assert rv.chosen == ["2d", "3d_fullres"] and rv.chosen_dice == 1.0
    assert [s.name for s in rv.ensembles] == ["2d+3d_fullres"]
    assert stage_outcome("find-best", rv).startswith("chosen 2d + 3d_fullres (fg Dice 1.000); "
                                                     "postprocessing: none")
    text = "\n".join(results_lines(rv))
    assert "  2d+3d_fullres    1.000       1.000       1.000  <- chosen" in text
    assert str(root / "best_configuration.json") in text and "Postprocessing: none" in text
    assert str(root / "2d" / "crossval" / "summary.json") in text
    # predictions and their test summary
    pred = root / "predictions"
    pred.mkdir()
    for c in ids[:3]:
        (pred / f"{c}.nii.gz").write_bytes(b"")
    (pred / ".case_x.nii.gz.tmp").write_bytes(b"")     # a file being written is not a case
    (pred / "summary.json").write_text(json.dumps(
        {"metric_per_case": [{}] * 3, "mean": {"1": {"Dice": 0.97}, "2": {"Dice": 0.9}},
         "foreground_mean": {"Dice": 0.935}}))
    rv = reader.read()
    assert stage_outcome("predict", rv) == "3 cases predicted; test fg Dice 0.935"
    assert "Test set: 3 cases predicted" in "\n".join(results_lines(rv))


def test_status_prints_the_results_and_json_carries_them(tmp_path, capsys, monkeypatch):
    from console.clients.cli import main as cli
    monkeypatch.setenv("FOLDWATCH_NO_NVML", "1")
    exp_path, ids = write_experiment(tmp_path, configurations=("2d",))
    root = load_experiment(exp_path).layout.root
    splits = json.loads((root / "splits.json").read_text())
    refs = {c: reference(i) for i, c in enumerate(ids)}
    for k in range(5):
        write_fold_outputs(root, "2d", k, {c: (refs[c], 0.9) for c in splits[k]["val"]}, refs)
    assert crossval.run(argparse.Namespace(experiment=exp_path, configuration="2d")) == 0
    assert find_best.run(argparse.Namespace(experiment=exp_path)) == 0
    capsys.readouterr()
    assert cli.main(["status", str(exp_path)]) == 0
    out = capsys.readouterr().out
    assert "Chosen model: 2d (fg Dice 1.000)" in out and "val Dice" in out and "best EMA" in out
    assert str(root / "best_configuration.json") in out
    assert cli.main(["status", str(exp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["results"]["chosen"] == ["2d"]
    assert data["columns"]["best"]["header"] == "best EMA"
    stage = next(r for r in data["runs"] if r["key"] == "crossval-2d")
    assert stage["state"] == "completed" and stage["outcome"].startswith("fg Dice 1.000")
