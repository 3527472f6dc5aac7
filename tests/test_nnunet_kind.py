"""`trainer: nnunetv2` with the real nnU-Net v2 on a tiny dataset made on the fly, all through
the engine: plan_and_preprocess, two 2d folds (one killed with SIGKILL mid-training and
resumed with --c by the watchdog), find-best, one prediction per fold, ensemble,
postprocessing and the test set's evaluation against labelsTs; with export.wandb, nnU-Net's
own W&B logger writes each fold's offline run, also when foldwatch was started by a process
that left its W&B service to it (WANDB_SERVICE); the Results view and the stage rows carry what
nnU-Net wrote. Takes a few minutes on a 2-core machine (docs/trainers.md)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from console.clients.text import results_lines
from console.engine.core import Engine
from console.protocol.vocabulary import cells
from contracts.events import validate_event
from contracts.jsonio import iter_jsonl
from engine_helpers import REPO, cpu_sampler, poll_until, run_to_success
from nnunet_fixture import make_tiny_dataset
from wandb_reader import leet_records
from wandb_service import foreign_service, wandb_processes

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nnunetv2") is None,
                                reason="needs the nnunet extra (pip install '.[nnunet]')")

EPOCHS = 6


def nnunet_experiment(tmp: Path, **nnunet) -> Path:
    roots = {k: str(tmp / f"nnUNet_{k}") for k in ("raw", "preprocessed", "results")}
    data = {"experiment": "nn", "trainer": "nnunetv2", "results": str(tmp / "results"),
            "folds": [0, 1], "configurations": {"2d": {}},
            "nnunet": {"dataset": 901, **roots, "epochs": EPOCHS, "iterations_per_epoch": 4,
                       "val_iterations": 1, "workers": 0, "processes": 1, **nnunet},
            "devices": {"cpu_slots": 2, "cpu_threads_per_run": 1},
            "watchdog": {"backoff_initial_s": 0.5, "backoff_max_s": 1, "grace_period_s": 20,
                         "stall_timeout_s": 300}}
    path = tmp / "nn.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def events(run_dir: Path, name: str) -> list[dict]:
    return [e for e in iter_jsonl(run_dir / "metrics.jsonl") if e.get("event") == name]


@pytest.mark.timeout(1800)     # ~3-4 min on an idle 2-core machine; far more when it is shared
def test_nnunet_workflow_through_the_engine_with_a_kill_and_a_stop(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    make_tiny_dataset(tmp_path / "nnUNet_raw", test_labels=True)
    path = nnunet_experiment(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["export"] = {"tensorboard": True, "wandb": {"mode": "offline", "project": "tiny-cv"}}
    path.write_text(yaml.safe_dump(data))
    # W&B's service of the process that started foldwatch, with a run open: inherited by every
    # fold, it made a killed or stopped attempt's run "in use" for the resumed one
    with foreign_service(tmp_path / "foreign-wandb") as token:
        monkeypatch.setenv("WANDB_SERVICE", token)
        eng = Engine(path, sampler=cpu_sampler())
        stopped, victim = eng.runs["2d/0"], eng.runs["2d/1"]
        try:
            done_at_stop, done_at_kill = stop_and_kill(eng, stopped, victim)
            snap = run_to_success(eng, timeout=600)
        finally:
            eng.close()
            monkeypatch.delenv("WANDB_SERVICE")

    # stop: checkpoint saved at the signal, status stopped, resumed with nothing lost
    ends = events(stopped.job.run_dir, "end")
    assert ends[0]["status"] == "stopped" and ends[0]["exit_code"] == 0
    starts = events(stopped.job.run_dir, "start")
    assert len(starts) == 2 and starts[1]["resumed_from"] >= done_at_stop
    # kill: the watchdog resumed the fold with --c, losing at most the epoch in progress
    launches = [d for d in iter_jsonl(eng.layout.console_events)
                if d.get("run") == "2d/1" and d.get("action") == "launch"]
    assert len(launches) == 2 and "--c" in launches[1]["argv"] and "--c" not in launches[0]["argv"]
    starts = events(victim.job.run_dir, "start")
    assert len(starts) == 2 and starts[1]["resumed_from"] >= done_at_kill
    for run in (stopped, victim):
        assert events(run.job.run_dir, "warning") == []        # W&B logged every attempt
        epochs = [e["epoch"] for e in events(run.job.run_dir, "epoch")]
        assert epochs[-1] == EPOCHS - 1
        assert len(epochs) - len(set(epochs)) <= 1, f"epochs done twice: {epochs}"

    # metrics come from nnU-Net's own training log, value for value
    fold0 = stopped.job.run_dir
    nn_fold = next((tmp_path / "nnUNet_results").glob("Dataset901_*/nnUNetTrainer__nnUNetPlans__2d/fold_0"))
    log = "".join(p.read_text() for p in sorted(nn_fold.glob("training_log_*.txt")))
    logged = [float(x) for x in re.findall(r"train_loss (\S+)", log)]
    parsed = events(fold0, "epoch")
    assert [e["train_loss"] for e in parsed] == logged and len(parsed) >= EPOCHS
    assert all(isinstance(e["val_dice_per_class"], list) and e["ema_dice"] is not None
               and e["lr"] is not None and e["epoch_s"] is not None for e in parsed)
    for e in iter_jsonl(fold0 / "metrics.jsonl"):
        if e["event"] in ("start", "epoch", "checkpoint", "end"):
            assert validate_event(e) == [], e
    kinds = [e["kind"] for e in events(fold0, "checkpoint")]
    assert kinds.count("latest") >= EPOCHS - 1 and "final" in kinds

    check_wandb_by_nnunet(tmp_path, eng, path, resumed={
        k: events(eng.runs[f"2d/{k}"].job.run_dir, "start")[1]["resumed_from"] for k in (0, 1)})

    # after the folds: find-best, a prediction per fold, the ensemble, postprocessing
    assert next((tmp_path / "nnUNet_results").glob("Dataset901_*/inference_information.json"))
    for k in (0, 1):
        assert len(list((eng.layout.root / "nnunet_predictions/2d" / f"fold_{k}").glob("*.npz"))) == 2
    final = sorted(p.name for p in eng.layout.predictions.glob("*.nii.gz"))
    assert final == ["tiny_test_000.nii.gz", "tiny_test_001.nii.gz"]
    check_results_of_nnunet(tmp_path, eng, snap)


def check_results_of_nnunet(tmp: Path, eng, snap) -> None:
    """What nnU-Net wrote reaches the Results view and the stage rows: its cross-validation
    summary, find-best's choice, the postprocessing decision, the test set's Dice (checked
    against a Dice computed here from the files); and the folds' samples/s."""
    model = next((tmp / "nnUNet_results").glob("Dataset901_*/nnUNetTrainer__nnUNetPlans__2d"))
    crossval = model / "crossval_results_folds_0_1"
    cv = json.loads((crossval / "summary.json").read_text())
    best = json.loads((model.parent / "inference_information.json").read_text())[
        "best_model_or_ensemble"]
    post = json.loads((crossval / "postprocessing.json").read_text())
    rv = snap.results
    assert [(s.name, s.foreground_dice, list(s.per_class)) for s in rv.configurations] == \
        [("2d", cv["foreground_mean"]["Dice"], ["square"])]
    assert rv.chosen == ["2d"] and rv.chosen_dice == best["result_on_crossval_pre_pp"]
    assert rv.postprocessing == ("largest component of all foreground"
                                 if post["postprocessing_fns"] else
                                 "none: it would not raise the Dice")
    assert rv.postprocessing_dice == (post["input_folder"]["foreground_mean"]["Dice"],
                                      post["postprocessed"]["foreground_mean"]["Dice"])
    labels = next((tmp / "nnUNet_raw").glob("Dataset901_*/labelsTs"))
    dice = []
    for ref in sorted(labels.glob("*.nii.gz")):
        a = np.asarray(nib.load(ref).dataobj) > 0
        b = np.asarray(nib.load(eng.layout.predictions / ref.name).dataobj) > 0
        dice.append(2 * (a & b).sum() / (a.sum() + b.sum()))
    assert rv.predicted_cases == 2 and rv.test is not None and rv.test.cases == 2
    assert rv.test.foreground_dice == pytest.approx(float(np.mean(dice)))
    text = "\n".join(results_lines(rv))
    assert "Chosen model: 2d" in text and "Test set: 2 cases predicted, 2 evaluated" in text
    rows = {r.key: r for r in snap.runs}
    assert cells(rows["find-best"])["config"] == "2d"
    assert rows["find-best"].outcome_dice == rv.chosen_dice
    assert rows["postprocess"].outcome_dice == rv.postprocessing_dice[1]
    assert rows["predict-2d-fold1"].outcome_cases == 2 and rows["ensemble"].outcome_cases == 2
    evaluated = cells(rows["evaluate-test"])
    assert evaluated["val_dice"] == f"{rv.test.foreground_dice:.3f}"
    assert evaluated["epoch"] == "2 cases" and evaluated["config"] == "2d"
    # samples/s: the plans' batch x the iterations per epoch / the epoch's time
    plans = json.loads(next((tmp / "nnUNet_preprocessed").glob(
        "Dataset901_*/nnUNetPlans.json")).read_text())
    batch = plans["configurations"]["2d"]["batch_size"]
    for k in (0, 1):
        run_dir = eng.runs[f"2d/{k}"].job.run_dir
        assert {(e["batch_size"], e["iterations_per_epoch"])
                for e in events(run_dir, "start")} == {(batch, 4)}
        last = events(run_dir, "epoch")[-1]
        assert (last["effective_batch"], last["iterations_per_epoch"]) == (batch, 4)
        assert rows[f"2d/{k}"].samples_per_s == pytest.approx(batch * 4 / last["epoch_s"])


def stop_and_kill(eng, stopped, victim) -> tuple[int, int]:
    """A graceful stop of fold 0 (SIGTERM), then a SIGKILL of fold 1's process group (the
    runner, nnU-Net and its workers), each mid-training; the epochs done at each. Each fold
    runs its own W&B service, and none of a stopped or killed attempt's outlives it."""
    def training(run, k):
        return lambda s: (run.metrics.epoch or 0) >= 2 and run.handle is not None \
            and (k is None or run.metrics.epoch < k)

    def gone(run, services):
        return lambda s: not set(services) & set(wandb_processes(run.job.run_dir))

    poll_until(eng, training(stopped, None), timeout=400, every=0.1)
    done_at_stop, services = stopped.metrics.epoch, wandb_processes(stopped.job.run_dir)
    assert "wandb-core" in services.values(), "fold 0 uses a W&B service that is not its own"
    eng.stop("2d/0")
    poll_until(eng, lambda s: stopped.state == "stopped", timeout=120, every=0.1)
    poll_until(eng, gone(stopped, services), timeout=60, every=0.1)
    eng.resume("2d/0")
    poll_until(eng, training(victim, EPOCHS - 1), timeout=400, every=0.1)
    done_at_kill, services = victim.metrics.epoch, wandb_processes(victim.job.run_dir)
    assert "wandb-core" in services.values(), "fold 1 uses a W&B service that is not its own"
    os.killpg(victim.handle.pid, signal.SIGKILL)
    # W&B starts its service in a session of its own, out of reach of the group's SIGKILL: it
    # ends itself when the fold process is gone (wandb-core --pid)
    poll_until(eng, gone(victim, services), timeout=60, every=0.1)
    return done_at_stop, done_at_kill


def check_wandb_by_nnunet(tmp: Path, eng, path: Path, resumed: dict[int, int]) -> None:
    """export.wandb with trainer: nnunetv2: nnU-Net's own logger wrote one W&B run per fold
    in fold_<k>/wandb/, each attempt (the first, and the one `--c` resumed) under the same
    run id, read back with `wandb leet inspect`; foldwatch's exporter wrote none."""
    model = next((tmp / "nnUNet_results").glob("Dataset901_*/nnUNetTrainer__nnUNetPlans__2d"))
    for k in (0, 1):
        attempts = sorted((model / f"fold_{k}" / "wandb").glob("offline-run-*"))
        assert len(attempts) == 2, attempts              # the first attempt, and after --c
        recs = [leet_records(a) for a in attempts]
        runs = [r["run"] for rs in recs for r in rs if r["type"] == "run"]
        assert {r["run_id"] for r in runs} == {runs[0]["run_id"]}, runs      # one run, resumed
        assert {(r["project"], r["run_group"], r["job_type"], r["display_name"]) for r in runs} \
            == {("tiny-cv", "nn", "2d", f"2d/fold_{k}")}
        trained = [{int(h["history"]["item"]["_step"]) for h in rs if h["type"] == "history"
                    and "train_losses" in h["history"]["item"]} for rs in recs]
        # the resumed attempt logged every epoch from its checkpoint on, nothing before it
        assert trained[1] == set(range(resumed[k], EPOCHS)), (k, trained)
        if k == 0:          # stopped with SIGTERM: W&B finished the run; no epoch missing
            assert trained[0] | trained[1] == set(range(EPOCHS)), trained
        last = [h["history"]["item"] for h in recs[1] if h["type"] == "history"
                and "mean_fg_dice" in h["history"]["item"]][-1]
        assert int(last["_step"]) == EPOCHS - 1 and 0 <= last["mean_fg_dice"] <= 1
        assert any(r["type"] == "exit" for r in recs[1])
    # the exporter writes TensorBoard for the folds, and no second W&B run
    out = subprocess.run([sys.executable, "-m", "console.bridges.exporters", str(path), "--once"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (eng.layout.tensorboard("2d", 0)).is_dir()
    assert not (eng.layout.root / "wandb").exists()


def _failed_run(eng, key: str) -> tuple[str, dict]:
    snap = poll_until(eng, lambda s: s.finished, timeout=180, every=0.2)
    view = next(r for r in snap.runs if r.key == key)
    end = events(eng.runs[key].job.run_dir, "end")[-1]
    return view.state, end


def test_unknown_dataset_is_a_clear_configuration_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    (tmp_path / "nnUNet_raw").mkdir()
    eng = Engine(nnunet_experiment(tmp_path, dataset=999), sampler=cpu_sampler())
    try:
        state, end = _failed_run(eng, "plan")
    finally:
        eng.close()
    assert state == "failed" and end["exit_code"] == 2 and end["reason"] == "usage"
    assert end["message"].startswith("unknown nnU-Net dataset 999: no Dataset999_* folder")
    assert eng.runs["2d/0"].handle is None and eng.runs["2d/0"].metrics.starts == 0


def test_plans_not_found_names_the_plans_there(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    make_tiny_dataset(tmp_path / "nnUNet_raw", cases=2)
    pre = tmp_path / "nnUNet_preprocessed" / "Dataset901_Tiny"
    pre.mkdir(parents=True)
    (pre / "nnUNetPlans.json").write_text("{}")
    path = nnunet_experiment(tmp_path, plan=False, plans="nnUNetResEncUNetLPlans")
    data = yaml.safe_load(path.read_text())
    data.update(folds=[0], pipeline={"find_best": False, "predict_test": False})
    path.write_text(yaml.safe_dump(data))
    eng = Engine(path, sampler=cpu_sampler())
    try:
        state, end = _failed_run(eng, "2d/0")
    finally:
        eng.close()
    assert state == "failed" and end["reason"] == "usage"
    assert "plans 'nnUNetResEncUNetLPlans' not found" in end["message"]
    assert "plans there: nnUNetPlans" in end["message"]
