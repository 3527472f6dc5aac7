"""A fold trains end to end in a real subprocess; its log follows the contract; exit codes.

The refusals and overrides run `python -m trainer train`'s entry point in this process
(run_train_here: no torch/MONAI import per run); the first test and the exit codes 2 and 3
stay real processes, so what the console sees of a trainer process is checked for real."""

import json

import torch

from contracts.events import validate_event
from contracts.jsonio import iter_jsonl
from pictures_helpers import assert_fold_pictures
from train_fixture import run_train, run_train_here, write_experiment


def _events(exp):
    return list(iter_jsonl(exp.parent / "results/tiny/3d_fullres/fold_0/metrics.jsonl"))


def test_fold_trains_and_log_follows_contract(tmp_path):
    exp = write_experiment(tmp_path, epochs=2, ipe=3)
    r = run_train(exp, "--skip-validation", env={"FOLDWATCH_PROGRESS_PLOT": "1"})
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("epoch ")]   # nnU-Net style
    assert [ln.split()[1] for ln in lines] == ["1/2", "2/2"], r.stdout
    assert "pseudo-Dice [" in lines[0] and "epoch_time" in lines[0] and "lr " in lines[0]
    assert_fold_pictures(exp.parent / "results/tiny/3d_fullres", 0, last_epoch=1)
    events = _events(exp)
    assert all(validate_event(e) == [] for e in events), [validate_event(e) for e in events]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and events[-1]["status"] == "completed"
    assert kinds.count("epoch") == 2 and "iter" in kinds
    assert {e["kind"] for e in events if e["event"] == "checkpoint"} >= {"latest", "final"}
    start = events[0]
    assert start["attempt"] == 1 and start["resumed_from"] is None and start["batch_size"] == 2
    epochs = [e for e in events if e["event"] == "epoch"]
    assert epochs[1]["lr"] < epochs[0]["lr"]                      # poly schedule
    assert 0 <= epochs[0]["data_wait_frac"] <= 1
    e0 = epochs[0]["val_dice"]
    assert epochs[1]["ema_dice"] == 0.9 * e0 + 0.1 * epochs[1]["val_dice"]
    ckpt_dir = exp.parent / "results/tiny/3d_fullres/fold_0/checkpoints"
    for name in ("latest.pt", "best.pt", "final.pt"):
        state = torch.load(ckpt_dir / name, weights_only=True)
        assert state["epoch"] == 2 or name == "best.pt"
    final = torch.load(ckpt_dir / "final.pt", weights_only=True)
    assert final["finished"] and len(final["history"]) == 2 and final["iter"] == 0


def test_refuses_to_overwrite_without_resume_and_resume_of_finished_run(tmp_path):
    exp = write_experiment(tmp_path, epochs=1, ipe=2)
    assert run_train_here(exp, "--skip-validation").returncode == 0
    again = run_train_here(exp)
    assert again.returncode == 2 and "--resume" in again.stderr
    refused = _events(exp)[-1]   # the refusal is an attempt the console can explain
    assert refused["event"] == "end" and refused["reason"] == "usage"
    assert "--resume" in refused["message"] and "Traceback" not in again.stderr
    done = run_train_here(exp, "--resume", "--skip-validation")
    assert done.returncode == 0, done.stderr
    starts = [e for e in _events(exp) if e["event"] == "start"]
    assert starts[-1]["attempt"] == 3 and starts[-1]["resumed_from"] == 1
    assert not [e for e in _events(exp)[len(starts):] if e["event"] == "epoch" and e["epoch"] > 0]


def test_resume_refused_when_plan_changed(tmp_path):
    exp = write_experiment(tmp_path, epochs=2, ipe=2)
    assert run_train_here(exp, "--skip-validation").returncode == 0
    plan_path = exp.parent / "results/tiny/plans/3d_fullres.json"
    plan = json.loads(plan_path.read_text())
    plan["filters"] = [4, 8, 32]
    plan_path.write_text(json.dumps(plan))
    r = run_train_here(exp, "--resume")
    assert r.returncode == 2
    assert "plan" in r.stderr and "--force-resume" in r.stderr and "Traceback" not in r.stderr
    end = _events(exp)[-1]
    assert end["event"] == "end" and end["status"] == "failed" and end["exit_code"] == 2


def test_resume_refused_when_hyperparameters_changed(tmp_path):
    exp = write_experiment(tmp_path, epochs=2, ipe=2)
    assert run_train_here(exp, "--skip-validation").returncode == 0
    exp.write_text(exp.read_text().replace("epochs: 2", "epochs: 3"))
    r = run_train_here(exp, "--resume", "--skip-validation")
    assert r.returncode == 2 and "epochs: 2 -> 3" in r.stderr
    forced = run_train_here(exp, "--resume", "--force-resume", "--skip-validation")
    assert forced.returncode == 0, forced.stderr


def test_bad_fold_and_missing_data_exit_codes(tmp_path):
    exp = write_experiment(tmp_path, epochs=1, ipe=1)
    r = run_train(exp, fold=7)
    assert r.returncode == 2 and "fold" in r.stderr and "Traceback" not in r.stderr
    r = run_train_here(exp, configuration="2d")
    assert r.returncode == 2 and "2d" in r.stderr
    pre = exp.parent / "results/tiny/preprocessed/3d_fullres"
    (pre / "case_001_data.npy").unlink()
    r = run_train(exp)
    assert r.returncode == 3 and "case_001" in r.stderr and "Traceback" not in r.stderr
    for p in pre.iterdir():
        p.unlink()
    pre.rmdir()
    r = run_train_here(exp)
    assert r.returncode == 3 and "preprocess" in r.stderr
    (exp.parent / "results/tiny/plans/3d_fullres.json").unlink()
    r = run_train_here(exp)
    assert r.returncode == 2 and "plan" in r.stderr


def test_batch_overrides_are_accepted_on_resume_and_recorded(tmp_path):
    exp = write_experiment(tmp_path, epochs=1, ipe=2)
    assert run_train_here(exp, "--skip-validation").returncode == 0
    r = run_train_here(exp, "--resume", "--batch-size", "1", "--grad-accumulation", "2",
                  "--skip-validation")
    assert r.returncode == 0, r.stderr
    start = [e for e in _events(exp) if e["event"] == "start"][-1]
    assert start["batch_size"] == 1 and start["grad_accumulation"] == 2
    assert start["overrides"] == {"batch_size": 1, "grad_accumulation": 2}
    assert start["effective_batch"] == 2


def test_2d_fold_trains_with_accumulation(tmp_path):
    exp = write_experiment(tmp_path, dim=2, epochs=1, ipe=2, batch_size=4, num_workers=0)
    r = run_train_here(exp, "--batch-size", "2", "--skip-validation", configuration="2d")
    assert r.returncode == 0, r.stderr
    events = list(iter_jsonl(exp.parent / "results/tiny/2d/fold_0/metrics.jsonl"))
    assert events[0]["grad_accumulation"] == 2 and events[-1]["status"] == "completed"
    assert [e["event"] for e in events].count("epoch") == 1


def test_cuda_out_of_memory_exits_75_with_failed_end(tmp_path, monkeypatch):
    """No GPU here: the step raises what torch raises on a CUDA OOM (torch.OutOfMemoryError)."""
    from trainer.cli import main
    from trainer.training.loop import FoldTrainer

    def oom(self, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; "
                                     "79.19 GiB total capacity; 77.01 GiB already allocated)")

    monkeypatch.setattr(FoldTrainer, "step", oom)
    monkeypatch.setenv("FOLDWATCH_CPU_THREADS", "1")
    exp = write_experiment(tmp_path, epochs=1, ipe=2, num_workers=0)
    code = main(["train", "--experiment", str(exp), "--configuration", "3d_fullres",
                 "--fold", "0"])
    assert code == 75
    end = _events(exp)[-1]
    assert end["event"] == "end" and end["status"] == "failed" and end["exit_code"] == 75
    assert "out of memory" in end["error"]
