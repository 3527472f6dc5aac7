"""TensorBoard and W&B (offline) exports of a run restarted three times: one continuous curve.

The log is written like a trainer that was killed three times: each attempt starts with a
`start` event, and after each kill the last epoch is redone and logged again. The exporter
runs as the console runs it (a subprocess), is stopped between attempts, and the exports
are read back with TensorBoard's EventAccumulator and wandb's own record format.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from contracts.experiment import load_experiment
from contracts.jsonio import EventWriter
from trainer.reporting.previews import Preview, write_previews
from wandb_reader import records

ROOT = Path(__file__).resolve().parents[1]
IPE = 3


def _exp(tmp_path, wandb=True):
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump({
        "experiment": "bridge", "dataset": "data", "results": "results", "folds": [0],
        "configurations": {"3d_fullres": {"epochs": 12, "iterations_per_epoch": IPE}},
        "export": {"tensorboard": True, "wandb": wandb}}))
    return load_experiment(path)


def _attempt(exp, log, attempt, epochs):
    log.write("start", configuration="3d_fullres", fold=0, attempt=attempt, epochs=12,
              iterations_per_epoch=IPE, resumed_from=epochs[0] if attempt > 1 else None)
    for e in epochs:
        for i in range(1, IPE + 1):
            log.write("iter", epoch=e, iter=i, loss=1.0 - 0.01 * (e * IPE + i), lr=0.01,
                      samples_per_s=10.0, data_wait_frac=0.1)
        log.write("epoch", epoch=e, train_loss=1.0 - 0.05 * e, val_loss=1.1 - 0.05 * e,
                  val_dice=0.05 * e, val_dice_per_class=[0.05 * e, None], ema_dice=0.04 * e,
                  lr=0.01, epoch_s=2.0, data_wait_frac=0.1, peak_mem_mb=100.0)
        yy, xx = np.mgrid[:24, :24]
        truth = (((yy - 12) ** 2 + (xx - 12) ** 2) < 30).astype(np.int16)
        write_previews([Preview("case_000", "fixed", (yy * xx).astype(np.float32), truth,
                                np.roll(truth, e % 3, 1), dice=0.5, slice_index=4)],
                       exp.layout.previews("3d_fullres", 0), e, "epoch")


def _export(exp, subprocess_=True):
    """A fresh exporter each time (state only in its cursors); the CLI one as a user runs it."""
    if not subprocess_:
        from console.bridges.exporters.runner import Exporter
        ex = Exporter(exp)
        try:
            ex.pump()
        finally:
            ex.close()
        return
    r = subprocess.run([sys.executable, "-m", "console.clients.cli", "export", str(exp.source)],
                       cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr


def test_three_restarts_one_continuous_curve_in_tensorboard_and_wandb(tmp_path):
    exp = _exp(tmp_path, wandb={"mode": "offline", "project": "bridge-cv"})
    fold = exp.layout.fold_dir("3d_fullres", 0)
    with EventWriter(fold / "metrics.jsonl") as log:
        # attempts 1-3 are killed after logging their last epoch, before its checkpoint:
        # the next attempt redoes that epoch (logged twice). The exporter runs in between.
        for attempt, epochs in ((1, [0, 1, 2]), (2, [2, 3, 4, 5]), (3, [5, 6]), (4, [6, 7, 8])):
            _attempt(exp, log, attempt, epochs)
            if attempt == 4:
                log.write("validation", foreground_dice=0.81, cases=2)
                log.write("end", status="completed", error=None, exit_code=0)
            _export(exp, subprocess_=attempt == 4)

    tb = EventAccumulator(str(exp.layout.tensorboard("3d_fullres", 0)),
                          size_guidance={"scalars": 0, "images": 0})
    tb.Reload()
    tags = tb.Tags()
    assert {"train/loss", "val/loss", "val/pseudo_dice_ema", "val/pseudo_dice_class_1",
            "train/iter_loss", "time/data_wait_frac"} <= set(tags["scalars"])
    assert "val/pseudo_dice_class_2" not in tags["scalars"]          # null: never a number
    for tag in ("train/loss", "val/loss"):
        assert [s.step for s in tb.Scalars(tag)] == list(range(9)), tag
    assert [s.value for s in tb.Scalars("train/loss")] == [
        np.float32(1.0 - 0.05 * e) for e in range(9)]
    assert [s.step for s in tb.Scalars("train/iter_loss")] == list(range(1, 9 * IPE + 1))
    assert [s.step for s in tb.Scalars("val/final_foreground_dice")] == [12]
    # `tensorboard --logdir results/EXP` finds the fold as a run of its own
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    mux = EventMultiplexer().AddRunsFromDirectory(str(exp.layout.root))
    assert list(mux.Runs()) == ["3d_fullres/fold_0/tensorboard"]
    images = tb.Images("preview/case_000")
    assert [i.step for i in images] == list(range(9))
    assert images[0].width > 24 and images[0].height > 24

    wandb_runs = _wandb_runs(exp)
    runs = [p for p, _ in wandb_runs]
    assert len(runs) == 4                                  # one per exporter start, same id
    steps, ids, groups, projects, images_seen = [], set(), set(), set(), 0
    for path, recs in wandb_runs:
        for rec in recs:
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                ids.add(rec.run.run_id)
                groups.add(rec.run.run_group)
                projects.add(rec.run.project)
            elif kind == "history":
                row = {i.key or "/".join(i.nested_key): i.value_json for i in rec.history.item}
                if "train/loss" in row:
                    steps.append(rec.history.step.num)
                    assert json.loads(row["train/loss"]) == 1.0 - 0.05 * rec.history.step.num
                images_seen += any(k.startswith("preview/") for k in row)
    assert ids == {"bridge-3d_fullres-fold0"} and groups == {"bridge"}
    assert projects == {"bridge-cv"}                       # export.wandb.project
    assert steps == list(range(9))
    assert images_seen == 9
    # and wandb's own CLI recognises them as runs to upload later (nothing is sent)
    out = subprocess.run([sys.executable, "-m", "wandb", "sync", "--dry-run",
                          *map(str, (p.parent for p in runs))], capture_output=True, text=True,
                         timeout=120, env={**__import__("os").environ, "WANDB_MODE": "offline"})
    assert out.returncode == 0 and "Would sync 4 run(s)" in out.stdout + out.stderr, out.stderr


def test_exporter_started_by_the_console_survives_a_crash_and_stops_cleanly(tmp_path):
    import time

    from console.bridges.exporters.feed import load_cursor
    from console.bridges.exporters.process import ExporterProcess
    exp = _exp(tmp_path, wandb=False)
    cursor = exp.layout.exports_dir / "3d_fullres_fold_0.tensorboard.json"

    def exported_epoch(want):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if load_cursor(cursor).get("last", {}).get("epoch") == want:
                return True
            time.sleep(0.1)
        return False

    fold = exp.layout.fold_dir("3d_fullres", 0)
    proc = ExporterProcess(exp, interval_s=0.2)
    with EventWriter(fold / "metrics.jsonl") as log:
        _attempt(exp, log, 1, [0, 1])
        proc.start()
        try:
            assert exported_epoch(1)
            proc.proc.kill()                       # the exporter crashes; the console's
            proc.proc.wait()                       # watcher starts it again from its cursor
            proc.ensure()
            assert proc.proc is not None and proc.restarts == 1
            _attempt(exp, log, 2, [1, 2])          # followed live, epoch 1 not twice
            assert exported_epoch(2)
        finally:
            assert proc.stop() == 0
    tb = EventAccumulator(str(exp.layout.tensorboard("3d_fullres", 0)))
    tb.Reload()
    assert [s.step for s in tb.Scalars("val/loss")] == [0, 1, 2]
    assert not (exp.layout.root / "wandb").exists()          # off unless switched on


def test_a_fold_started_from_scratch_is_a_new_curve_not_skipped_steps(tmp_path):
    """The console moves the fold folder aside and starts over: its new log restarts at
    epoch 0, which the exporter must export (new TensorBoard folder, new W&B run id)."""
    exp = _exp(tmp_path)
    fold = exp.layout.fold_dir("3d_fullres", 0)
    with EventWriter(fold / "metrics.jsonl") as log:
        _attempt(exp, log, 1, [0, 1, 2])
    _export(exp, subprocess_=False)
    fold.rename(fold.with_name("fold_0.old-1"))                  # what `x` (scratch) does
    with EventWriter(fold / "metrics.jsonl") as log:
        _attempt(exp, log, 1, [0, 1])
    _export(exp, subprocess_=False)
    steps = {}
    for where in (fold.with_name("fold_0.old-1"), fold):
        tb = EventAccumulator(str(where / "tensorboard"))
        tb.Reload()
        steps[where.name] = [s.step for s in tb.Scalars("train/loss")]
    assert steps == {"fold_0.old-1": [0, 1, 2], "fold_0": [0, 1]}
    ids = {}
    for path, recs in _wandb_runs(exp):
        for rec in recs:
            if rec.WhichOneof("record_type") == "run":
                ids[rec.run.run_id] = path
    assert set(ids) == {"bridge-3d_fullres-fold0", "bridge-3d_fullres-fold0-g1"}


def test_one_broken_sink_or_picture_does_not_stop_the_others(tmp_path, capsys):
    from console.bridges.exporters.runner import MAX_FAILURES, Exporter
    exp = _exp(tmp_path)
    fold = exp.layout.fold_dir("3d_fullres", 0)
    with EventWriter(fold / "metrics.jsonl") as log:
        _attempt(exp, log, 1, [0, 1])
    (fold / "previews" / "epoch_0001_case_000.png").write_bytes(b"not a png")   # damaged
    exp.layout.tensorboard("3d_fullres", 0).write_text("a file where the folder should be")
    ex = Exporter(exp)
    try:
        for _ in range(MAX_FAILURES + 1):
            ex.pump()
    finally:
        ex.close()
    err = capsys.readouterr().err
    assert err.count("-> tensorboard") == MAX_FAILURES and "giving up" in err
    assert "previews of epoch 1 skipped" in err
    assert _wandb_steps(exp, "train/loss") == [0, 1], err     # W&B carried on


def _wandb_runs(exp, timeout=60):
    """(file, records) of every offline run, once wandb's service has written their `exit`
    record (finish() hands the rest of the log to it)."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        files = sorted((exp.layout.root / "wandb").glob("offline-run-*/run-*.wandb"))
        runs = [(p, list(records(p))) for p in files]
        done = all(any(r.WhichOneof("record_type") == "exit" for r in rs) for _, rs in runs)
        if (files and done) or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)


def _wandb_steps(exp, tag):
    return [r.history.step.num for _, rs in _wandb_runs(exp) for r in rs
            if r.WhichOneof("record_type") == "history"
            and any((i.key or "/".join(i.nested_key)) == tag for i in r.history.item)]
