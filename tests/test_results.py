"""The Results view read back from what the real crossval / find-best stages wrote."""

from __future__ import annotations

import argparse
import json

import numpy as np

from console.clients.text import results_lines
from console.protocol.model import ResultsView, ScoreView
from console.kinds.results import LayoutResults
from contracts.experiment import load_experiment
from pipeline_fixture import reference, write_experiment, write_fold_outputs
from trainer.commands import crossval, find_best


def test_results_from_real_crossval_and_find_best(tmp_path):
    exp_path, ids = write_experiment(tmp_path)
    exp = load_experiment(exp_path)
    root = exp.layout.root
    reader = LayoutResults(exp.layout, list(exp.configurations))

    def stage_outcome(key, rv):
        result = reader.stage_result(key, rv)
        return result.text if result else None
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
    assert "                 fg Dice  organ  lesion" in text      # columns as wide as the names
    assert "* 2d+3d_fullres    1.000  1.000   1.000" in text
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
    assert "Chosen model: 2d (fg Dice 1.000; * above)" in out and "val Dice" in out and "best EMA" in out
    assert str(root / "best_configuration.json") in out
    assert cli.main(["status", str(exp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["results"]["chosen"] == ["2d"]
    assert data["columns"]["best"]["header"] == "best EMA"
    stage = next(r for r in data["runs"] if r["key"] == "crossval-2d")
    assert stage["state"] == "completed" and stage["outcome"].startswith("fg Dice 1.000")


def test_class_names_are_never_cut_and_tables_fit_80_columns():
    from ui_engine import brain_results_view
    lines = results_lines(brain_results_view(), width=80)
    shown = lines[1:lines.index("Files")]           # all but the root and the file paths
    assert all(len(ln) <= 80 for ln in shown), [ln for ln in shown if len(ln) > 80]
    heads = [ln for ln in lines if ln.split()[:2] == ["fg", "Dice"]]
    assert len(heads) == 3            # cross-validation, ensembles, test set: one block each
    names = ("grey_matter", "white_matter", "cerebrospinal_fluid")
    for head in heads:
        assert all(f" {n}" in head for n in names), head
    # every value sits under its class name (right-aligned to the name's last letter)
    head = heads[0]
    row = next(ln for ln in lines if ln.startswith("  3d_fullres "))
    assert any(ln.startswith("* 2d+3d_fullres    0.829 ") for ln in lines)
    for name, value in zip(names, ("0.834", "0.871", "0.764")):
        end = head.index(name) + len(name)
        assert row[end - 5:end] == value, (name, row)
    test_row = next(ln for ln in lines if ln.startswith("  test set "))
    assert test_row[heads[2].index("cerebrospinal_fluid") + 14:].strip() == "0.727"


def test_many_classes_go_on_in_blocks_with_every_name_whole():
    names = [f"{side}_{part}" for part in ("hippocampus", "amygdala", "thalamus", "putamen",
                                           "caudate") for side in ("left", "right")]
    per_class = {n: round(0.5 + i / 100, 3) for i, n in enumerate(names)}
    rv = ResultsView(root="/r", configurations=[ScoreView("3d_fullres", 0.6, per_class, 4, "")],
                     chosen=["3d_fullres"], chosen_dice=0.6)
    lines = results_lines(rv, width=80)
    start = lines.index("Cross-validation (every fold's validation cases, per configuration)")
    table = lines[start + 1:lines.index("Chosen model: 3d_fullres (fg Dice 0.600; * above)")]
    assert all(len(ln) <= 80 for ln in table) and len(table) >= 4     # at least two blocks
    heads, rows = table[0::2], table[1::2]
    assert [n for h in heads for n in h.split() if n != "fg" and n != "Dice"] == names
    assert all(r.startswith("* 3d_fullres ") for r in rows)       # the chosen one, marked
    for head, row in zip(heads, rows):       # values under their names, block by block
        for name in head.split():
            if name in per_class:
                end = head.index(name) + len(name)
                assert row[end - 5:end] == f"{per_class[name]:.3f}", (name, row)
