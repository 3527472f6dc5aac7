"""Experiments and completed folds written by hand in the trainer's on-disk format, for the
pack/import tests that need no training: pack and import copy bytes, so random bytes stand in
for a checkpoint's tensors. (tests/test_transfer_pipeline.py trains real folds.)"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import yaml

CASES = [f"case_{i:03d}" for i in range(10)]


def plan(patch=(32, 32)) -> dict:
    return {"configuration": "2d", "dim": 2, "spacing": [3.0, 0.8, 0.8],
            "patch_size": list(patch), "batch_size": 4, "median_shape": [6, 32, 32],
            "kernel_sizes": [[3, 3], [3, 3]], "strides": [[1, 1], [2, 2]], "filters": [4, 8],
            "normalization": [{"name": "CT", "scheme": "ct", "clip": [-100.0, 200.0],
                               "mean": 50.5, "std": 20.25}],
            "labels": {"background": 0, "organ": 1}, "channel_names": ["CT"],
            "file_ending": ".nii.gz", "extra": {}}


def splits(cases=CASES) -> list[dict]:
    return [{"train": [c for c in cases if c not in cases[k::5]], "val": cases[k::5]}
            for k in range(5)]


def fingerprint(dataset: str, cases=CASES) -> dict:
    return {"dataset": dataset, "case_ids": list(cases), "channel_names": ["CT"],
            "labels": {"background": 0, "organ": 1}, "spacings": [[3.0, 0.8, 0.8]] * len(cases),
            "shapes_after_crop": [[6, 32, 32]] * len(cases), "median_spacing": [3.0, 0.8, 0.8],
            "foreground_intensity": {"0": {"name": "CT", "mean": 50.5000000001, "std": 20.25}}}


def experiment(folder: Path, *, name: str = "lab", patch=(32, 32), cases=CASES,
               results: Path | None = None, **extra) -> Path:
    """An experiment file in `folder` with results/<name>/ planned: plan, splits, fingerprint
    (the dataset path differs per folder, as on two machines)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"experiment": name, "dataset": "data", "results": str(results or "results"),
            "configurations": {"2d": {"epochs": 2, "iterations_per_epoch": 2}},
            "devices": {"cpu_slots": 1}, **extra}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    root = (results or folder / "results") / name
    (root / "plans").mkdir(parents=True, exist_ok=True)
    (root / "plans" / "2d.json").write_text(json.dumps(plan(patch), indent=2))
    (root / "splits.json").write_text(json.dumps(splits(cases)))
    (root / "fingerprint.json").write_text(json.dumps(fingerprint(str(folder / "data"), cases)))
    return path


def _event(f, t: float, event: str, **fields) -> None:
    f.write(json.dumps({"t": t, "event": event, **fields}) + "\n")


def completed_fold(exp_path: Path, k: int, *, host: str = "bob-ws", ended: str = "completed",
                   size: int = 20_000) -> Path:
    """results/<exp>/2d/fold_<k> as a fold that trained 2 epochs on `host` and validated."""
    cfg = yaml.safe_load(exp_path.read_text())
    fold = exp_path.parent / cfg["results"] / cfg["experiment"] / "2d" / f"fold_{k}"
    (fold / "checkpoints").mkdir(parents=True)
    t = time.time() - 3600
    with open(fold / "metrics.jsonl", "w") as f:
        _event(f, t, "start", configuration="2d", fold=k, pid=4242, host=host, device="cuda:0",
               attempt=1, resumed_from=None, epochs=2, iterations_per_epoch=2, batch_size=4,
               hyperparameters={"epochs": 2, "iterations_per_epoch": 2})
        for e in range(2):
            _event(f, t + e + 1, "checkpoint", kind="latest", epoch=e + 1,
                   path=f"/home/bob/fold_{k}/checkpoints/latest.pt")
            _event(f, t + e + 1, "epoch", epoch=e, train_loss=0.5 - e / 10, val_loss=0.4,
                   val_dice=0.7 + e / 10, val_dice_per_class=[0.7 + e / 10], ema_dice=0.7,
                   lr=0.01, epoch_s=1.0, data_wait_frac=0.1, peak_mem_mb=100.0)
        if ended == "completed":
            _event(f, t + 3, "validation", foreground_dice=0.81, cases=2)
            _event(f, t + 4, "end", status="completed", reason="completed", message=None,
                   error=None, exit_code=0)
        elif ended == "stopped":
            _event(f, t + 4, "end", status="stopped", reason="stopped", message=None,
                   error=None, exit_code=0, stop_cause="signal")
    (fold / "stdout.log").write_text(f"trained on {host}\n")
    (fold / "stderr.log").write_text("")
    for name in ("latest.pt", "best.pt") + (("final.pt",) if ended == "completed" else ()):
        (fold / "checkpoints" / name).write_bytes(os.urandom(size))
    (fold / "run.lock").write_text(json.dumps({"pid": 4242, "host": host}))
    if ended == "completed":
        val = fold / "validation"
        val.mkdir()
        per_case = []
        for case in CASES[k::5]:
            (val / f"{case}.nii.gz").write_bytes(os.urandom(300))
            (val / f"{case}.npz").write_bytes(os.urandom(500))
            per_case.append({"case": case, "1": {"Dice": 0.8}, "prediction_file": str(val)})
        (val / "summary.json").write_text(json.dumps({"metric_per_case": per_case,
                                                      "foreground_mean": {"Dice": 0.81}}))
    (fold / "progress.png").write_bytes(b"\x89PNG\r\n" + os.urandom(200))
    (fold / "previews").mkdir()
    (fold / "previews" / "epoch_0001_case_000.png").write_bytes(os.urandom(100))
    (fold / "tensorboard").mkdir()
    (fold / "tensorboard" / "events.out").write_bytes(b"x")
    return fold
