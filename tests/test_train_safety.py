"""Trainer crash safety: checkpoint-then-announce under kill -9, one process per fold, disk full."""

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from contracts import exitcodes
from contracts.events import validate_event
from contracts.jsonio import iter_jsonl
from contracts.runlock import RunLock
from train_fixture import ROOT, train_cmd, trainer_env, write_experiment
from system_helpers import small_disk

CFG = dict(epochs=2, ipe=2, val_iterations=1, num_workers=0)


def _fold(exp):
    return exp.parent / "results/tiny/3d_fullres/fold_0"


def _train(exp, *more, **env):
    return subprocess.run(train_cmd(exp, "3d_fullres", 0, *more), cwd=ROOT,
                          env=trainer_env(**env), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def killed_after_checkpoint(tmp_path_factory):
    """A fold SIGKILLed right after epoch 0's latest.pt and checkpoint event, before `epoch`."""
    exp = write_experiment(tmp_path_factory.mktemp("killed"), **CFG)
    r = _train(exp, "--skip-validation", FOLDWATCH_FAULT="after-checkpoint:1:kill")
    assert r.returncode == -signal.SIGKILL, r.stderr
    return exp


def _copy(exp, tmp_path):
    shutil.copytree(exp.parent, tmp_path / "x")
    return tmp_path / "x" / exp.name


def test_kill_between_checkpoint_and_announce_resumes_after_that_epoch(killed_after_checkpoint,
                                                                        tmp_path):
    exp = _copy(killed_after_checkpoint, tmp_path)
    metrics = _fold(exp) / "metrics.jsonl"
    events = list(iter_jsonl(metrics))
    assert [e["event"] for e in events if e["event"] in ("epoch", "end")] == []
    saved = [e for e in events if e["event"] == "checkpoint" and e["kind"] == "latest"]
    assert saved and saved[-1]["epoch"] == 1
    assert torch.load(_fold(exp) / "checkpoints/latest.pt", weights_only=True)["epoch"] == 1

    r = _train(exp, "--resume", "--skip-validation")
    assert r.returncode == 0, r.stderr
    events = list(iter_jsonl(metrics))
    assert all(validate_event(e) == [] for e in events)
    start = [e for e in events if e["event"] == "start"][-1]
    assert start["resumed_from"] == 1 and start["attempt"] == 2   # epoch 0 was not redone
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [(e["epoch"], e.get("replayed", False)) for e in epochs] == [(0, True), (1, False)]
    # every epoch event follows the latest checkpoint that makes it resumable
    for e in epochs:
        i = events.index(e)
        assert any(c["event"] == "checkpoint" and c["kind"] == "latest" and c["epoch"] == e["epoch"] + 1
                   for c in events[:i])
    assert events[-1]["reason"] == "completed"


def test_second_trainer_for_a_held_fold_exits_busy_and_writes_nothing(tmp_path, capsys):
    from trainer.cli import main
    exp = write_experiment(tmp_path, **CFG)
    fold = _fold(exp)
    with RunLock(fold, role="train", configuration="3d_fullres", fold=0):
        before = {p: p.read_bytes() for p in fold.rglob("*") if p.is_file()}
        code = main(["train", "--experiment", str(exp), "--configuration", "3d_fullres",
                     "--fold", "0", "--resume"])
        after = {p: p.read_bytes() for p in fold.rglob("*") if p.is_file()}
    err = capsys.readouterr().err
    assert code == exitcodes.BUSY
    assert f"pid {os.getpid()}" in err and str(fold) in err and "Traceback" not in err
    assert before == after and not (fold / "metrics.jsonl").exists()


def test_disk_full_during_training_exits_74_and_keeps_the_checkpoint(killed_after_checkpoint,
                                                                     tmp_path):
    exp = _copy(killed_after_checkpoint, tmp_path)   # epoch 0 trained and checkpointed
    ckpts = _fold(exp) / "checkpoints"
    size = (ckpts / "latest.pt").stat().st_size
    ckpts.rename(ckpts.with_name("saved"))
    # A disk with room for the two existing checkpoints and half of a third: epoch 1's
    # atomic save (a whole second copy next to the old one) cannot fit.
    with small_disk(ckpts, size_kb=(size * 5 // 2) // 1024 + 4) as why_not:
        for p in ckpts.with_name("saved").iterdir():
            (ckpts / p.name).write_bytes(p.read_bytes())
        fault = {} if why_not is None else {"FOLDWATCH_FAULT": "checkpoint-write:1:enospc"}
        r = _train(exp, "--resume", "--skip-validation", **fault)
        assert r.returncode == exitcodes.NO_SPACE, r.stderr
        assert "Traceback" not in r.stderr and "no space left on" in r.stderr
        end = list(iter_jsonl(_fold(exp) / "metrics.jsonl"))[-1]
        assert end["event"] == "end" and end["reason"] == "no_space" and validate_event(end) == []
        assert str(ckpts) in end["message"] and "MB free" in end["message"]
        if why_not is None:                     # a real full disk: it names the size
            assert "checkpoint needs ~" in end["message"]
        state = torch.load(ckpts / "latest.pt", weights_only=True)   # still loadable
        assert state["epoch"] == 1
        assert not [p for p in ckpts.iterdir() if p.name.startswith(".")]   # no temp left


def test_real_enospc_while_writing_is_no_space_and_previous_file_survives(tmp_path, monkeypatch):
    from contracts.errors import NoSpaceError
    from trainer.training import checkpoint as ck
    where = tmp_path / "disk"
    with small_disk(where, size_kb=256) as why_not:
        if why_not:
            pytest.skip("needs root to mount a small tmpfs (the fault seam covers the rest)")
        base = {"format": 1, "optimizer": {}, "epoch": 1, "iter": 0, "finished": False,
                "history": [], "partial": {}, "torch_rng": torch.get_rng_state(),
                "configuration": "3d_fullres"}
        ck.save_checkpoint(where / "latest.pt", {**base, "model": {"w": torch.ones(1000)}})
        # Let the free-space check pass so that the write itself hits the full disk.
        monkeypatch.setattr(ck, "SPACE_MARGIN", 0.01)
        with pytest.raises(NoSpaceError) as info:
            ck.save_checkpoint(where / "latest.pt",
                               {**base, "epoch": 2, "model": {"w": torch.ones(200_000)}})
        assert "latest.pt" in str(info.value) and info.value.exit_code == exitcodes.NO_SPACE
        assert ck.load_checkpoint(where / "latest.pt")["epoch"] == 1
        assert [p.name for p in where.iterdir()] == ["latest.pt"]
