"""Exact resume (DataLoader workers on), SIGTERM mid-epoch, kill -9 during checkpoint writes."""

import signal
import subprocess
import sys
import time

import torch

from contracts.jsonio import iter_jsonl
from train_fixture import ROOT, run_train_here, train_cmd, trainer_env, write_experiment

CFG = dict(epochs=2, ipe=24, val_iterations=1, num_workers=2)


def _fold(exp):
    return exp.parent / "results/tiny/3d_fullres/fold_0"


def _wait_for(proc, metrics, predicate, timeout=180):
    """Poll the log until an event matches (the trainer writes every iteration in tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metrics.exists() and any(predicate(e) for e in iter_jsonl(metrics)):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("event never came")


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_exact_resume_after_kill_and_sigterm_mid_epoch(tmp_path):
    # the uninterrupted reference and the last resume need no process of their own
    # (run_train_here); the kill and the SIGTERM hit real trainer processes
    straight = write_experiment(tmp_path / "a", **CFG)
    r = run_train_here(straight, "--skip-validation")
    assert r.returncode == 0, r.stderr

    exp = write_experiment(tmp_path / "b", **CFG)
    metrics = _fold(exp) / "metrics.jsonl"
    # 1) kill -9 once the first epoch's latest.pt exists (E/2 of E=2)
    p = subprocess.Popen(train_cmd(exp, "3d_fullres", 0, "--skip-validation"), cwd=ROOT,
                         env=trainer_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(p, metrics, lambda e: e["event"] == "checkpoint" and e["kind"] == "latest")
    p.send_signal(signal.SIGKILL)
    p.wait()
    # 2) resume, then SIGTERM in the middle of the second epoch
    p = subprocess.Popen(train_cmd(exp, "3d_fullres", 0, "--resume", "--skip-validation"),
                         cwd=ROOT, env=trainer_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    n_before = sum(1 for _ in iter_jsonl(metrics))
    _wait_for(p, metrics, lambda e: e["event"] == "iter" and e["epoch"] == 1 and e["iter"] >= 3
              and e["t"] > 0)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    events = list(iter_jsonl(metrics))[n_before:]
    assert events[-1]["event"] == "end" and events[-1]["status"] == "stopped"
    stopped_at = torch.load(_fold(exp) / "checkpoints/latest.pt", weights_only=True)
    assert stopped_at["epoch"] == 1 and 3 <= stopped_at["iter"] < CFG["ipe"], stopped_at["iter"]
    # 3) resume continues from that iteration and ends with the straight run's weights
    r = run_train_here(exp, "--resume", "--skip-validation")
    assert r.returncode == 0, r.stderr
    starts = [e for e in iter_jsonl(metrics) if e["event"] == "start"]
    assert starts[-1]["resumed_from"] == 1 and starts[-1]["resumed_iter"] == stopped_at["iter"]
    iters = [e for e in iter_jsonl(metrics) if e["event"] == "iter" and e["t"] > starts[-1]["t"]]
    assert iters[0]["iter"] == stopped_at["iter"] + 1
    a = _weights(_fold(straight) / "checkpoints/final.pt")
    b = _weights(_fold(exp) / "checkpoints/final.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the straight run"
    ha = torch.load(_fold(straight) / "checkpoints/final.pt", weights_only=True)["history"]
    hb = torch.load(_fold(exp) / "checkpoints/final.pt", weights_only=True)["history"]
    assert [h["val_dice"] for h in ha] == [h["val_dice"] for h in hb]


WRITER = r"""
import sys, torch
from trainer.training.checkpoint import save_checkpoint
path = sys.argv[1]
i = 0
while True:
    i += 1
    save_checkpoint(path, {"i": i, "w": torch.full((256, 1024), float(i))})
    print(i, flush=True)
"""


def test_kill_9_during_checkpoint_writes_leaves_a_loadable_file(tmp_path):
    target = tmp_path / "latest.pt"
    for delay in (0.05, 0.13, 0.21, 0.37):
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=ROOT,
                             env=trainer_env(), stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip()  # at least one complete save
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
        state = torch.load(target, weights_only=True)
        assert torch.all(state["w"] == float(state["i"]))
