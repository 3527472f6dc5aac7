"""`trainer: nnunetv2`'s test-set stages without processes: the job graph with and without the
cascade, each stage's argument list or skip reason from an inference_information.json written
in the shape nnU-Net 2.8.1's find_best_configuration writes it, and the cascade's fold check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from console.kinds import kind_for
from contracts.errors import ConfigError
from contracts.experiment import load_experiment

LOW, CAS = "3d_lowres", "3d_cascade_fullres"


def _kind(tmp: Path, cfgs, folds=(0, 1, 2, 3, 4), test_images=True, **pipeline):
    data = {"experiment": "nn", "trainer": "nnunetv2", "results": str(tmp / "r"),
            "configurations": {c: {} for c in cfgs}, "folds": list(folds),
            "nnunet": {"dataset": 7, "raw": str(tmp / "raw"), "preprocessed": str(tmp / "pre"),
                       "results": str(tmp / "res"), "processes": 2}}
    if pipeline:
        data["pipeline"] = pipeline
    if test_images:
        (tmp / "raw" / "Dataset007_X" / "imagesTs").mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    f = tmp / "e.yaml"
    f.write_text(yaml.safe_dump(data))
    kind = kind_for(load_experiment(f))
    return kind, {j.key: j for j in kind.build_jobs()}


def _chosen(tmp: Path, *cfgs: str) -> None:
    """inference_information.json as find_best_configuration (nnU-Net 2.8.1) saves it."""
    folder = tmp / "res" / "Dataset007_X"
    folder.mkdir(parents=True, exist_ok=True)
    models = [{"plans": "nnUNetPlans", "configuration": c, "trainer": "nnUNetTrainer"}
              for c in (LOW, CAS)]
    ids = [f"nnUNetTrainer__nnUNetPlans__{c}" for c in cfgs]
    source = folder / ("ensembles/ensemble___" + "___".join(ids) + "___0_1_2_3_4"
                       if len(cfgs) > 1 else f"{ids[0]}/crossval_results_folds_0_1_2_3_4")
    (folder / "inference_information.json").write_text(json.dumps({
        "folds": [0, 1, 2, 3, 4], "dataset_name_or_id": "7", "considered_models": models,
        "ensembling_allowed": True, "all_results": {"nnUNetTrainer__nnUNetPlans__3d_lowres": 0.8},
        "best_model_or_ensemble": {
            "result_on_crossval_pre_pp": 0.8, "result_on_crossval_post_pp": 0.81,
            "postprocessing_file": str(source / "postprocessing.pkl"),
            "some_plans_file": str(source / "plans.json"),
            "selected_model_or_models": [{"configuration": c, "trainer": "nnUNetTrainer",
                                          "plans_identifier": "nnUNetPlans"} for c in cfgs]}}))


def _launch(kind, job):
    """(the nnU-Net program's arguments, the runner's own arguments, the skip reason or None)."""
    argv, _, _ = kind.launch(job, "gpu0", None)
    if "--skip" in argv:
        return None, argv, argv[argv.index("--skip") + 1]
    cut = argv.index("--")
    return argv[cut + 1:], argv[:cut], None


def _opt(program: list[str], flag: str, n: int = 1):
    i = program.index(flag)
    return program[i + 1] if n == 1 else program[i + 1:i + 1 + n]


def test_graph_with_the_cascade(tmp_path):
    kind, jobs = _kind(tmp_path, [CAS, LOW])
    folds = range(5)
    low = tuple(f"predict-{LOW}-fold{k}" for k in folds)
    cas = tuple(f"predict-{CAS}-fold{k}" for k in folds)
    for k in folds:
        assert jobs[low[k]].depends_on == ("find-best",) and jobs[low[k]].needs_gpu
        assert jobs[cas[k]].depends_on == ("find-best", f"ensemble-{LOW}")
        assert (jobs[cas[k]].configuration, jobs[cas[k]].fold) == (CAS, k)
    prev = jobs[f"ensemble-{LOW}"]
    assert prev.depends_on == low and prev.kind == "stage" and not prev.needs_gpu
    assert prev.configuration == LOW
    assert jobs["ensemble"].depends_on == low + cas
    assert jobs["postprocess"].depends_on == ("ensemble",)
    order = list(jobs)                      # every job after what it waits for
    assert all(order.index(d) < order.index(k) for k, j in jobs.items() for d in j.depends_on)
    # without find-best a stage waits for the folds of its own configuration
    _, jobs = _kind(tmp_path, [LOW, CAS], find_best=False, postprocess=False)
    assert jobs[f"predict-{CAS}-fold2"].depends_on == tuple(
        f"{CAS}/{k}" for k in folds) + (f"ensemble-{LOW}",)
    assert jobs[f"predict-{LOW}-fold2"].depends_on == tuple(f"{LOW}/{k}" for k in folds)
    assert "postprocess" not in jobs and "find-best" not in jobs


def test_graph_without_the_cascade(tmp_path):
    kind, jobs = _kind(tmp_path, ["2d", "3d_fullres"], folds=(0, 1))
    predicts = tuple(f"predict-{c}-fold{k}" for c in ("2d", "3d_fullres") for k in (0, 1))
    assert [k for k in jobs if k.startswith(("predict", "ensemble", "postprocess"))] == \
        [*predicts, "ensemble", "postprocess"]
    assert all(jobs[p].depends_on == ("find-best",) for p in predicts)
    assert jobs["ensemble"].depends_on == predicts
    _chosen(tmp_path, "3d_fullres")
    program, _, why = _launch(kind, jobs["predict-2d-fold1"])
    assert why == "2d was not chosen by find-best"
    program, runner, _ = _launch(kind, jobs["predict-3d_fullres-fold1"])
    assert "-prev_stage_predictions" not in program and not any("--require" in a for a in runner)
    assert _opt(program, "-c") == "3d_fullres" and _opt(program, "-f") == "1"


def test_cascade_chosen_runs_the_whole_chain(tmp_path):
    kind, jobs = _kind(tmp_path, [LOW, CAS])
    _chosen(tmp_path, CAS)
    images = tmp_path / "raw" / "Dataset007_X" / "imagesTs"
    preds = tmp_path / "r" / "nn" / "nnunet_predictions"
    # the first stage is predicted even though find-best chose only the cascade
    program, _, why = _launch(kind, jobs[f"predict-{LOW}-fold3"])
    assert why is None and Path(program[0]).name == "nnUNetv2_predict"
    assert (_opt(program, "-i"), _opt(program, "-o")) == (str(images), str(preds / LOW / "fold_3"))
    assert (_opt(program, "-c"), _opt(program, "-f"), _opt(program, "-d")) == (LOW, "3", "7")
    assert "--save_probabilities" in program and _opt(program, "-device") == "cuda"
    assert "-prev_stage_predictions" not in program
    assert (_opt(program, "-npp"), _opt(program, "-nps")) == ("2", "2")
    assert kind.launch(jobs[f"predict-{LOW}-fold3"], "gpu0", None).env["nnUNet_def_n_proc"] == "2"
    for k in (0, 1, 2, 3, 4):
        (preds / LOW / f"fold_{k}").mkdir(parents=True)
    # the 3d_lowres folds ensembled into segmentations: the cascade's previous stage
    program, _, why = _launch(kind, jobs[f"ensemble-{LOW}"])
    assert why is None and Path(program[0]).name == "nnUNetv2_ensemble"
    assert program[program.index("-i") + 1:program.index("-o")] == [
        str(preds / LOW / f"fold_{k}") for k in range(5)]
    assert _opt(program, "-o") == str(preds / LOW / "ensemble") and "--save_npz" not in program
    assert _opt(program, "-np") == "2"
    # each cascade fold reads it with -prev_stage_predictions, and refuses to start without it
    program, runner, why = _launch(kind, jobs[f"predict-{CAS}-fold4"])
    assert why is None and _opt(program, "-c") == CAS and _opt(program, "-f") == "4"
    assert _opt(program, "-prev_stage_predictions") == str(preds / LOW / "ensemble")
    assert _opt(program, "-o") == str(preds / CAS / "fold_4")
    need, = [a for a in runner if a.startswith("--require=")]
    assert need.startswith(f"--require={preds / LOW / 'ensemble'}=") and f"ensemble-{LOW}" in need
    # the final ensemble: the cascade's folds only (3d_lowres was a means, not chosen)
    for k in (0, 1, 2, 3, 4):
        (preds / CAS / f"fold_{k}").mkdir(parents=True)
    program, _, _ = _launch(kind, jobs["ensemble"])
    assert program[program.index("-i") + 1:program.index("-o")] == [
        str(preds / CAS / f"fold_{k}") for k in range(5)]
    assert _opt(program, "-o") == str(preds / "ensemble")
    (preds / "ensemble").mkdir()
    program, _, why = _launch(kind, jobs["postprocess"])
    assert why is None and _opt(program, "-i") == str(preds / "ensemble")
    assert _opt(program, "-pp_pkl_file").endswith(
        f"nnUNetTrainer__nnUNetPlans__{CAS}/crossval_results_folds_0_1_2_3_4/postprocessing.pkl")
    # an ensemble of both: the final ensemble takes every fold of both configurations
    _chosen(tmp_path, LOW, CAS)
    program, _, _ = _launch(kind, jobs["ensemble"])
    assert program[program.index("-i") + 1:program.index("-o")] == [
        str(preds / c / f"fold_{k}") for c in (LOW, CAS) for k in range(5)]
    assert _launch(kind, jobs[f"ensemble-{LOW}"])[2] is None


def test_skip_reasons(tmp_path):
    kind, jobs = _kind(tmp_path, ["3d_fullres", LOW, CAS])
    _chosen(tmp_path, LOW)
    assert _launch(kind, jobs[f"predict-{LOW}-fold0"])[2] is None
    assert _launch(kind, jobs[f"ensemble-{LOW}"])[2] == (
        f"{CAS} was not chosen by find-best, so nothing needs {LOW}'s ensemble as its previous "
        "stage")
    assert _launch(kind, jobs[f"predict-{CAS}-fold0"])[2] == f"{CAS} was not chosen by find-best"
    _chosen(tmp_path, "3d_fullres")
    assert _launch(kind, jobs[f"predict-{LOW}-fold0"])[2] == (
        f"{LOW} was not chosen by find-best, nor {CAS} (which needs its predictions)")
    # the cascade chosen, but its first stage predicted nothing (no folders)
    _chosen(tmp_path, CAS)
    assert _launch(kind, jobs[f"ensemble-{LOW}"])[2] == (
        f"{LOW} predicted nothing, so there is nothing to ensemble")
    kind, jobs = _kind(tmp_path / "b", [LOW, CAS], test_images=False)
    assert _launch(kind, jobs[f"predict-{CAS}-fold0"])[2] == (
        "no test images (imagesTs, or test_images:) to predict")


def test_cascade_folds_must_cover_the_splits(tmp_path):
    with pytest.raises(ConfigError, match=r"folds: \[0, 1\]: 3d_cascade_fullres needs every fold"
                       r" of the splits \(nnU-Net's default 5-fold split: 5 folds\).*Set folds: "
                       r"\[0, 1, 2, 3, 4\]"):
        _kind(tmp_path, [LOW, CAS], folds=(0, 1))
    # the user's own splits (nnU-Net copies the raw folder's file at plan time)
    (tmp_path / "raw" / "Dataset007_X" / "splits_final.json").write_text(json.dumps(
        [{"train": ["a"], "val": ["b"]}, {"train": ["b"], "val": ["a"]}]))
    _, jobs = _kind(tmp_path, [LOW, CAS], folds=(0, 1))
    assert f"predict-{CAS}-fold1" in jobs
    pre = tmp_path / "pre" / "Dataset007_X"
    pre.mkdir(parents=True)
    (pre / "splits_final.json").write_text(json.dumps([{"train": [], "val": []}] * 3))
    with pytest.raises(ConfigError, match=f"{pre / 'splits_final.json'}: 3 folds"):
        _kind(tmp_path, [LOW, CAS], folds=(0, 1))
    (pre / "splits_final.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable nnU-Net splits file"):
        _kind(tmp_path, [LOW, CAS], folds=(0, 1))
    # foldwatch's own trainer keeps its five-fold rule at load time
    with pytest.raises(ConfigError, match="all five folds"):
        load_experiment(_write(tmp_path, {"experiment": "x", "dataset": "d", "folds": [0, 1],
                                          "configurations": {LOW: {}, CAS: {}}}))


def _write(tmp: Path, data: dict) -> Path:
    f = tmp / "f.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


def test_planner_and_process_options(tmp_path):
    data = {"experiment": "nn", "trainer": "nnunetv2", "results": str(tmp_path / "r"),
            "configurations": {"2d": {}, LOW: {}, CAS: {}},
            "nnunet": {"dataset": 7, "raw": "raw", "preprocessed": "pre", "results": "res",
                       "plans": "nnUNetPlans_4GB", "gpu_memory_target_gb": 4, "processes": 3,
                       "predict_processes": 0},
            "pipeline": {"find_best": False, "postprocess": False}}
    kind = kind_for(load_experiment(_write(tmp_path, data)))
    jobs = {j.key: j for j in kind.build_jobs()}
    program, _, _ = _launch(kind, jobs["plan"])
    assert set(_opt(program, "-c", 3)) == {"2d", "3d_lowres", "3d_fullres"}
    assert _opt(program, "-gpu_memory_target") == "4"
    assert _opt(program, "-overwrite_plans_name") == "nnUNetPlans_4GB"
    assert (_opt(program, "-np"), _opt(program, "-npfp")) == ("3", "3")
    assert kind.launch(jobs[f"{LOW}/0"], "cpu0", None).env["nnUNet_def_n_proc"] == "3"
    (tmp_path / "raw" / "Dataset007_X" / "imagesTs").mkdir(parents=True)
    program, _, _ = _launch(kind, jobs[f"predict-{LOW}-fold0"])
    assert (_opt(program, "-npp"), _opt(program, "-nps")) == ("0", "0")   # sequential
    assert "--disable_tta" not in program                                 # tta: true
    assert "--disable-tta" not in _launch(kind, jobs[f"{LOW}/0"])[0]
    data["nnunet"]["tta"] = False
    off = kind_for(load_experiment(_write(tmp_path, data)))
    assert "--disable_tta" in _launch(off, jobs[f"predict-{CAS}-fold1"])[0]
    assert "--disable-tta" in _launch(off, jobs[f"{CAS}/1"])[0]
    del data["nnunet"]["tta"]
    del data["nnunet"]["gpu_memory_target_gb"], data["nnunet"]["processes"]
    kind = kind_for(load_experiment(_write(tmp_path, data)))
    program, _, _ = _launch(kind, jobs["plan"])
    assert "-gpu_memory_target" not in program and "-overwrite_plans_name" not in program
    assert "-np" not in program and "-npfp" not in program
    assert "nnUNet_def_n_proc" not in kind.launch(jobs["plan"], "cpu0", None).env


def test_the_table_names_each_stage_with_its_configuration_and_fold(tmp_path):
    from console.protocol.model import RunView
    from console.protocol.vocabulary import cells
    _, jobs = _kind(tmp_path, [LOW, CAS])
    shown = {k: cells(RunView(k, "stage", k, "queued", configuration=j.configuration,
                              fold=j.fold)) for k, j in jobs.items() if j.kind == "stage"}
    assert (shown[f"predict-{CAS}-fold2"]["config"], shown[f"predict-{CAS}-fold2"]["fold"]) == \
        (CAS, "predict 2")
    assert (shown[f"ensemble-{LOW}"]["config"], shown[f"ensemble-{LOW}"]["fold"]) == \
        (LOW, "ensemble")
    assert (shown["ensemble"]["config"], shown["ensemble"]["fold"]) == ("-", "ensemble")
    assert (shown["postprocess"]["config"], shown["postprocess"]["fold"]) == ("-", "postprocess")
