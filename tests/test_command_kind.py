"""`trainer: command` through the engine with real programs: the Pytorch-UNet-style example
read by a stdout pattern (killed with SIGKILL, resumed from its checkpoint glob), the helper
example writing its own events, and the clear failures of bad settings."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from console.engine.core import Engine
from contracts.jsonio import iter_jsonl
from engine_helpers import REPO, cpu_sampler, poll_until, run_to_success, sigkill_mid_training

SCRIPTS = REPO / "configs" / "examples" / "scripts"
PATTERN = (r"Epoch (?P<epoch>\d+)/(?P<epochs>\d+) train_loss=(?P<loss>[\d.]+) "
           r"val_loss=(?P<val_loss>[\d.]+) val_dice=(?P<dice>[\d.]+) lr=(?P<lr>[\d.e-]+)")


def command_experiment(tmp: Path, command: dict, folds=(0,), name="cmd") -> Path:
    data = {"experiment": name, "trainer": "command", "results": str(tmp / "results"),
            "folds": list(folds), "configurations": {"unet2d": {}}, "command": command,
            "devices": {"cpu_slots": 2, "cpu_threads_per_run": 1},
            "watchdog": {"backoff_initial_s": 0.2, "backoff_max_s": 0.5, "grace_period_s": 5,
                         "stall_timeout_s": 120}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def events(run_dir: Path, name: str) -> list[dict]:
    return [e for e in iter_jsonl(run_dir / "metrics.jsonl") if e.get("event") == name]


def launches(eng, key: str) -> list[dict]:
    return [d for d in iter_jsonl(eng.layout.console_events)
            if d.get("run") == key and d.get("action") == "launch"]


def run_to_end(path: Path, timeout: float = 240):
    eng = Engine(path, sampler=cpu_sampler())
    try:
        snap = poll_until(eng, lambda s: s.finished, timeout=timeout, every=0.1)
    finally:
        eng.close()
    return eng, snap


def test_stdout_pattern_run_killed_and_resumed_from_its_checkpoint_glob(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # ~0.2 s an epoch: 40 of them leave the poll below seconds, not a fraction of one, to see
    # the run between epoch 3 and its last epoch on a loaded machine (8 epochs raced it)
    epochs = 40
    path = command_experiment(tmp_path, {
        "argv": [sys.executable, str(SCRIPTS / "train_unet2d.py"), "--epochs", str(epochs),
                 "--batch-size", "8", "--amp", "--cases", "20", "--size", "16",
                 "--fold", "{fold}", "--device", "{device}",
                 "--checkpoint-dir", "{run_dir}/checkpoints"],
        "resume_args": ["--load", "{checkpoint}"],
        "checkpoints": "{run_dir}/checkpoints/checkpoint_epoch*.pth",
        "metrics": "stdout_pattern", "pattern": PATTERN, "first_epoch": 1, "epochs": epochs})
    eng = Engine(path, sampler=cpu_sampler())
    try:
        run = eng.runs["unet2d/0"]
        done = sigkill_mid_training(eng, run, 3, epochs - 1, timeout=240, every=0.05)
        run_to_success(eng, timeout=240, every=0.1)
    finally:
        eng.close()
    argvs = [d["argv"] for d in launches(eng, "unet2d/0")]
    assert len(argvs) == 2 and "--load" not in argvs[0]
    resumed_from = argvs[1][argvs[1].index("--load") + 1]
    assert Path(resumed_from).name.startswith("checkpoint_epoch")
    assert int(Path(resumed_from).stem.removeprefix("checkpoint_epoch")) >= done
    got = events(run.job.run_dir, "epoch")
    numbers = [e["epoch"] for e in got]
    assert numbers[-1] == epochs - 1 and len(numbers) - len(set(numbers)) <= 1
    assert all(0 <= e["val_dice"] <= 1 and e["train_loss"] > 0 and e["lr"] is not None
               for e in got)
    assert any(e["kind"] == "latest" for e in events(run.job.run_dir, "checkpoint"))
    assert f"Epoch 1/{epochs}" in (run.job.run_dir / "stdout.log").read_text()


def test_helper_script_writes_its_own_events(tmp_path):
    path = command_experiment(tmp_path, {
        "argv": [sys.executable, str(SCRIPTS / "train_with_helper.py"), "--fold", "{fold}",
                 "--epochs", "12", "--out", "{run_dir}/checkpoints"],
        "resume_args": ["--resume", "{checkpoint}"],
        "checkpoints": "{run_dir}/checkpoints/fold{fold}_latest.npz",
        "env": {"PYTHONPATH": str(REPO)}}, folds=(0, 3))
    eng, snap = run_to_end(path)
    assert snap.succeeded, [(r.key, r.state, r.message) for r in snap.runs]
    for k in (0, 3):
        run_dir = eng.runs[f"unet2d/{k}"].job.run_dir
        got = events(run_dir, "epoch")
        assert [e["epoch"] for e in got] == list(range(12))
        assert got[-1]["val_dice"] > got[0]["val_dice"]        # it learns
        ends = events(run_dir, "end")
        assert ends[-1]["status"] == "completed" and ends[-1]["reason"] == "completed"
        stream = [e["event"] for e in iter_jsonl(run_dir / "metrics.jsonl")]
        assert stream.index("checkpoint") < stream.index("epoch")


def test_a_program_that_does_not_exist_fails_clearly(tmp_path):
    path = command_experiment(tmp_path, {"argv": ["no-such-trainer-xyz", "--fold", "{fold}"]})
    eng, snap = run_to_end(path, timeout=60)
    view = next(r for r in snap.runs if r.key == "unet2d/0")
    assert view.state == "failed" and "never restarted" in view.message
    end = events(eng.runs["unet2d/0"].job.run_dir, "end")[-1]
    assert end["reason"] == "usage" and end["exit_code"] == 2
    assert "program not found: 'no-such-trainer-xyz'" in end["message"]


def test_a_pattern_that_never_matches_stops_the_run_and_says_so(tmp_path):
    chatter = "import time\nfor i in range(10000):\n    print('step', i, flush=True)\n    time.sleep(0.001)\n"
    path = command_experiment(tmp_path, {
        "argv": [sys.executable, "-c", chatter], "metrics": "stdout_pattern",
        "pattern": r"Epoch (?P<epoch>\d+) loss=(?P<loss>[\d.]+)", "no_metrics_after_lines": 50})
    eng, snap = run_to_end(path, timeout=60)
    view = next(r for r in snap.runs if r.key == "unet2d/0")
    assert view.state == "failed"
    end = events(eng.runs["unet2d/0"].job.run_dir, "end")[-1]
    assert end["reason"] == "usage" and "command.pattern matched none of the first" in end["message"]
