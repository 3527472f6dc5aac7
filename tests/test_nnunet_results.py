"""`trainer: nnunetv2`'s results read back for the views, without processes: files written in the
shapes nnU-Net 2.8.1 writes them (find_best_configuration's crossval summaries, ensembles and
inference_information.json, determine_postprocessing's postprocessing.json, the evaluation's
summary.json), the stage rows, the evaluate-test stage's arguments, and the folds' batch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from console.engine.results import ResultsReader, apply_stage_result
from console.kinds import kind_for
from console.protocol.model import RunView
from console.protocol.vocabulary import cells
from contracts.experiment import load_experiment

TR = "nnUNetTrainer__nnUNetPlans"
FOLDS = "0_1_2_3_4"


def _kind(tmp: Path, cfgs=("2d", "3d_fullres"), labels=None, test_labels=True, **pipeline):
    data = {"experiment": "nn", "trainer": "nnunetv2", "results": str(tmp / "r"),
            "configurations": {c: {} for c in cfgs}, "folds": [0, 1, 2, 3, 4],
            "nnunet": {"dataset": 7, "raw": str(tmp / "raw"), "preprocessed": str(tmp / "pre"),
                       "results": str(tmp / "res"), "processes": 2}}
    if pipeline:
        data["pipeline"] = pipeline
    raw = tmp / "raw" / "Dataset007_Brain"
    (raw / "imagesTs").mkdir(parents=True, exist_ok=True)
    if test_labels:
        (raw / "labelsTs").mkdir(exist_ok=True)
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T1"}, "file_ending": ".nii.gz", "numTraining": 20,
        "labels": labels or {"background": 0, "grey_matter": 1, "white_matter": 2,
                             "cerebrospinal_fluid": 3}}))
    f = tmp / "e.yaml"
    f.write_text(yaml.safe_dump(data))
    kind = kind_for(load_experiment(f))
    return kind, {j.key: j for j in kind.build_jobs()}


def _metrics(dice: float) -> dict:
    """One label's metrics as nnU-Net's compute_metrics_on_folder writes them."""
    return {"Dice": dice, "FN": 4.0, "FP": 1.0, "IoU": dice / (2 - dice), "TN": 2048.0,
            "TP": 252.0, "n_pred": 253.0, "n_ref": 256.0}


def _summary(path: Path, per_label: dict[str, float], cases: int) -> None:
    """summary.json as nnU-Net's compute_metrics_on_folder saves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mean = {k: _metrics(v) for k, v in per_label.items()}
    fg = _metrics(sum(per_label.values()) / len(per_label))
    path.write_text(json.dumps({
        "foreground_mean": fg, "mean": mean,
        "metric_per_case": [{"metrics": mean, "prediction_file": f"/p/c{i}.nii.gz",
                             "reference_file": f"/g/c{i}.nii.gz"} for i in range(cases)]},
        indent=4))


def _find_best(tmp: Path, winner: str, fns: list[str], kwargs: list[dict],
               post: dict[str, float]) -> Path:
    """What find_best_configuration leaves: crossval summaries, the ensemble's, the winner's
    postprocessing.json and inference_information.json."""
    res = tmp / "res" / "Dataset007_Brain"
    _summary(res / f"{TR}__2d" / f"crossval_results_folds_{FOLDS}" / "summary.json",
             {"1": 0.812, "2": 0.853, "3": 0.738}, 20)
    _summary(res / f"{TR}__3d_fullres" / f"crossval_results_folds_{FOLDS}" / "summary.json",
             {"1": 0.834, "2": 0.871, "3": 0.764}, 20)
    ens = f"ensemble___{TR}__2d___{TR}__3d_fullres___{FOLDS}"
    _summary(res / "ensembles" / ens / "summary.json", {"1": 0.839, "2": 0.876, "3": 0.772}, 20)
    source = res / "ensembles" / ens if winner == "ensemble" else \
        res / f"{TR}__{winner}" / f"crossval_results_folds_{FOLDS}"
    before = json.loads((source / "summary.json").read_text())
    (source / "postprocessing.json").write_text(json.dumps({
        "input_folder": {k: before[k] for k in ("foreground_mean", "mean")},
        "postprocessed": {"foreground_mean": _metrics(sum(post.values()) / len(post)),
                          "mean": {k: _metrics(v) for k, v in post.items()}},
        "postprocessing_fns": fns, "postprocessing_kwargs": kwargs}, indent=4))
    chosen = ["2d", "3d_fullres"] if winner == "ensemble" else [winner]
    (res / "inference_information.json").write_text(json.dumps({
        "folds": [0, 1, 2, 3, 4], "dataset_name_or_id": "Dataset007_Brain",
        "considered_models": [{"plans": "nnUNetPlans", "configuration": c,
                               "trainer": "nnUNetTrainer"} for c in ("2d", "3d_fullres")],
        "ensembling_allowed": True,
        "all_results": {f"{TR}__2d": 0.801, f"{TR}__3d_fullres": 0.823, ens: 0.829},
        "best_model_or_ensemble": {
            "result_on_crossval_pre_pp": 0.829 if winner == "ensemble" else 0.823,
            "result_on_crossval_post_pp": sum(post.values()) / len(post),
            "postprocessing_file": str(source / "postprocessing.pkl"),
            "some_plans_file": str(source / "plans.json"),
            "selected_model_or_models": [{"configuration": c, "trainer": "nnUNetTrainer",
                                          "plans_identifier": "nnUNetPlans"} for c in chosen]}},
        indent=4))
    (source / "plans.json").write_text("{}")
    (res / "inference_instructions.txt").write_text("***Run inference like this:***\n")
    return source


def _cases(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"brain_{i:03d}.nii.gz").write_bytes(b"")
    (folder / ".brain_009.nii.gz.tmp").write_bytes(b"")     # being written: no case


def _row(reader: ResultsReader, key: str, rv, configuration=None) -> RunView:
    r = RunView(key=key, kind="stage", label=key, state="completed", configuration=configuration)
    apply_stage_result(r, reader.stage_result(key, rv))
    return r


def test_before_find_best_there_is_nothing_and_no_stage_result(tmp_path):
    kind, _ = _kind(tmp_path)
    reader = ResultsReader(kind.results_source())
    rv = reader.read()
    assert rv.empty and rv.root == str(tmp_path / "r" / "nn")
    assert reader.class_names() == ["grey_matter", "white_matter", "cerebrospinal_fluid"]
    assert reader.stage_result("find-best", rv) is None
    assert reader.stage_result("predict-2d-fold0", rv) is None


def test_an_ensemble_won_with_postprocessing_per_class(tmp_path):
    kind, jobs = _kind(tmp_path)
    # determine_postprocessing kept "all foreground" (every label) and then label 3 alone
    source = _find_best(tmp_path, "ensemble",
                        ["remove_all_but_largest_component_from_segmentation"] * 2,
                        [{"labels_or_regions": [1, 2, 3]}, {"labels_or_regions": 3}],
                        {"1": 0.84, "2": 0.877, "3": 0.79})
    reader = ResultsReader(kind.results_source())
    rv = reader.read()
    assert [(s.name, s.foreground_dice, s.cases) for s in rv.configurations] == [
        ("2d", (0.812 + 0.853 + 0.738) / 3, 20), ("3d_fullres", (0.834 + 0.871 + 0.764) / 3, 20)]
    assert rv.configurations[0].per_class == {"grey_matter": 0.812, "white_matter": 0.853,
                                              "cerebrospinal_fluid": 0.738}
    assert [s.name for s in rv.ensembles] == ["2d+3d_fullres"]
    assert rv.chosen == ["2d", "3d_fullres"] and rv.chosen_dice == 0.829
    assert rv.best_path.endswith("Dataset007_Brain/inference_information.json")
    assert rv.how_to_predict.endswith("inference_instructions.txt")
    assert rv.postprocessing == ("largest component of all foreground + largest component of "
                                 "cerebrospinal_fluid")
    assert rv.postprocessing_dice == ((0.839 + 0.876 + 0.772) / 3, (0.84 + 0.877 + 0.79) / 3)
    assert rv.postprocessing_path == str(source / "postprocessing.json")
    assert rv.predicted_cases is None and rv.test is None
    best = _row(reader, "find-best", rv)
    assert (best.outcome_model, best.outcome_dice) == ("2d+3d_fullres", 0.829)
    assert cells(best)["config"] == "2d+3d_fullres" and cells(best)["val_dice"] == "0.829"
    assert best.outcome.startswith("chosen 2d + 3d_fullres (fg Dice 0.829); postprocessing: "
                                   "largest component of all foreground")
    # the test set: per-fold predictions, the ensemble, postprocessing, the evaluation
    root = tmp_path / "r" / "nn"
    _cases(root / "nnunet_predictions" / "3d_fullres" / "fold_2", 4)
    _cases(root / "nnunet_predictions" / "ensemble", 4)
    _cases(root / "predictions", 4)
    pred = _row(reader, "predict-3d_fullres-fold2", rv, "3d_fullres")
    assert (pred.outcome, pred.outcome_cases, cells(pred)["config"]) == \
        ("4 cases predicted", 4, "3d_fullres")
    assert _row(reader, "predict-2d-fold2", rv).outcome is None      # nothing there
    rv = reader.read()
    assert rv.predicted_cases == 4 and rv.test is None
    ens = _row(reader, "ensemble", rv)
    assert (ens.outcome, ens.outcome_model, cells(ens)["epoch"]) == \
        ("4 cases ensembled", "2d+3d_fullres", "4 cases")
    post = _row(reader, "postprocess", rv)
    assert post.outcome_dice == rv.postprocessing_dice[1] and post.outcome.endswith(
        f"on 4 cases (cross-validation fg Dice 0.829 -> {rv.postprocessing_dice[1]:.3f})")
    _summary(root / "predictions" / "summary.json", {"1": 0.801, "2": 0.842, "3": 0.727}, 4)
    rv = reader.read()
    assert rv.test.cases == 4 and rv.test.foreground_dice == (0.801 + 0.842 + 0.727) / 3
    evaluated = _row(reader, "evaluate-test", rv)
    assert cells(evaluated)["val_dice"] == "0.790" and cells(evaluated)["epoch"] == "4 cases"
    assert evaluated.outcome == ("test fg Dice 0.790 on 4 cases (grey_matter 0.801, "
                                 "white_matter 0.842, cerebrospinal_fluid 0.727)")
    assert jobs["evaluate-test"].depends_on == ("postprocess",)


def test_region_dataset_and_postprocessing_left_off(tmp_path):
    labels = {"background": 0, "whole tumour": [1, 2, 3], "tumour core": [2, 3],
              "enhancing tumour": 3}
    kind, jobs = _kind(tmp_path, labels=labels, postprocess=False)
    res = tmp_path / "res" / "Dataset007_Brain"
    # nnU-Net's region keys: str(tuple), a single label value as a one-label region
    source = _find_best(tmp_path, "3d_fullres",
                        ["remove_all_but_largest_component_from_segmentation"],
                        [{"labels_or_regions": [2, 3]}],
                        {"(1, 2, 3)": 0.9, "(2, 3)": 0.8, "(3,)": 0.7})
    for cfg in ("2d", "3d_fullres"):
        _summary(res / f"{TR}__{cfg}" / f"crossval_results_folds_{FOLDS}" / "summary.json",
                 {"(1, 2, 3)": 0.9, "(2, 3)": 0.78, "(3,)": 0.7}, 20)
    reader = ResultsReader(kind.results_source())
    rv = reader.read()
    assert reader.class_names() == ["whole tumour", "tumour core", "enhancing tumour"]
    assert list(rv.configurations[1].per_class) == ["whole tumour", "tumour core",
                                                    "enhancing tumour"]
    assert rv.chosen == ["3d_fullres"] and rv.postprocessing_path == str(
        source / "postprocessing.json")
    assert rv.postprocessing == ("largest component of tumour core (not applied to the test "
                                 "set: pipeline.postprocess is off)")
    assert "postprocess" not in jobs and jobs["evaluate-test"].depends_on == ("ensemble",)


def test_damaged_or_half_written_files_read_as_absent_until_rewritten(tmp_path):
    kind, _ = _kind(tmp_path)
    _find_best(tmp_path, "2d", [], [], {"1": 0.812, "2": 0.853, "3": 0.738})
    info = tmp_path / "res" / "Dataset007_Brain" / "inference_information.json"
    good = info.read_text()
    info.write_text(good[:100])
    reader = ResultsReader(kind.results_source())
    rv = reader.read()
    assert rv.chosen is None and len(rv.configurations) == 2      # the rest is still read
    info.write_text(good)
    os.utime(info, (info.stat().st_atime, info.stat().st_mtime + 5))
    rv = reader.read()
    assert rv.chosen == ["2d"] and rv.postprocessing == "none: it would not raise the Dice"


def test_evaluate_test_runs_nnunets_evaluation_against_labelsTs(tmp_path):
    kind, jobs = _kind(tmp_path)
    job = jobs["evaluate-test"]
    assert list(jobs)[-1] == "evaluate-test" and job.kind == "stage" and not job.needs_gpu
    argv, _, _ = kind.launch(job, "cpu0", None)
    assert argv[argv.index("--skip") + 1] == \
        "nothing was predicted, so there is nothing to evaluate"
    source = _find_best(tmp_path, "2d", [], [], {"1": 0.8, "2": 0.8, "3": 0.8})
    root, raw = tmp_path / "r" / "nn", tmp_path / "raw" / "Dataset007_Brain"
    _cases(root / "predictions", 3)
    _cases(raw / "labelsTs", 2)
    argv, _, _ = kind.launch(job, "cpu0", None)
    cut = argv.index("--")
    program, runner = argv[cut + 1:], argv[:cut]
    assert Path(program[0]).name == "nnUNetv2_evaluate_folder"
    assert program[1:3] == [str(raw / "labelsTs"), str(root / "predictions")]
    opt = {program[i]: program[i + 1] for i in range(3, len(program) - 1)
           if program[i].startswith("-")}
    assert opt["-djfile"] == str(raw / "dataset.json")
    assert opt["-pfile"] == str(source / "plans.json")
    assert opt["-o"] == str(root / "predictions" / "summary.json") and opt["-np"] == "2"
    assert "--chill" in program
    # a predicted case without its label: the stage refuses (exit 2), naming it
    need, = [a for a in runner if a.startswith("--require=")]
    assert need.startswith(f"--require={raw / 'labelsTs' / 'brain_002.nii.gz'}=")
    assert "has no label for 1 predicted test case(s) (brain_002.nii.gz)" in need
    _cases(raw / "labelsTs", 3)
    argv, _, _ = kind.launch(job, "cpu0", None)
    assert not any(a.startswith("--require=") for a in argv)


def test_no_labelsTs_no_evaluation_stage(tmp_path):
    _, jobs = _kind(tmp_path, test_labels=False)
    assert "evaluate-test" not in jobs and list(jobs)[-1] == "postprocess"


def test_fold_start_carries_the_plans_batch_and_the_iterations(tmp_path):
    kind, jobs = _kind(tmp_path, cfgs=("3d_lowres", "3d_cascade_fullres"))
    pre = tmp_path / "pre" / "Dataset007_Brain"
    pre.mkdir(parents=True)

    def runner_args(key):
        argv, _, _ = kind.launch(jobs[key], "gpu0", None)
        runner = argv[:argv.index("--")]
        return {runner[i]: runner[i + 1] for i in range(len(runner) - 1)
                if runner[i].startswith("--")}
    assert "--batch-size" not in runner_args("3d_lowres/0")      # no plans yet
    assert runner_args("3d_lowres/0")["--iterations"] == "250"   # nnUNetTrainer's
    # the cascade inherits 3d_fullres' batch, as nnU-Net's PlansManager resolves it
    (pre / "nnUNetPlans.json").write_text(json.dumps({"configurations": {
        "3d_fullres": {"batch_size": 2, "patch_size": [64, 64, 64]},
        "3d_lowres": {"inherits_from": "3d_fullres", "batch_size": 3},
        "3d_cascade_fullres": {"inherits_from": "3d_fullres",
                               "previous_stage": "3d_lowres"}}}))
    assert runner_args("3d_lowres/0")["--batch-size"] == "3"
    assert runner_args("3d_cascade_fullres/4")["--batch-size"] == "2"
