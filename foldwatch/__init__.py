"""foldwatch's logging helper for your own training script: standard library only, no account.

    import foldwatch
    foldwatch.checkpoint_saved("checkpoints/epoch3.pth", epoch=4)   # epochs done: 0..3
    foldwatch.log(epoch=3, loss=0.41, val_loss=0.52, dice=0.83, lr=1e-3)   # epoch 3, 0-based

Under foldwatch (`trainer: command`, `metrics: jsonl`) each call appends one event to
`$FOLDWATCH_RUN_DIR/metrics.jsonl`, the log the console reads (docs/metrics-log.md). Run on its
own, without that variable, every call does nothing, so the script works unchanged.
Call `checkpoint_saved` after the file is completely written, before `log` of that epoch.
"""

from __future__ import annotations

import json
import math
import os
import time

__all__ = ["log", "log_iter", "checkpoint_saved", "enabled"]

RUN_DIR_ENV = "FOLDWATCH_RUN_DIR"

# Friendly argument names -> the event fields of docs/metrics-log.md.
_ALIASES = {"loss": "train_loss", "dice": "val_dice"}


def enabled() -> bool:
    """True when running under foldwatch (the events go somewhere)."""
    return bool(os.environ.get(RUN_DIR_ENV))


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if hasattr(v, "item") and callable(v.item):      # a numpy or torch scalar
        try:
            return _clean(v.item())
        except (TypeError, ValueError):
            pass
    if hasattr(v, "tolist"):
        return _clean(v.tolist())
    return v


def _write(event: str, fields: dict) -> None:
    run_dir = os.environ.get(RUN_DIR_ENV)
    if not run_dir:
        return
    record = {"t": time.time(), "event": event, **{k: _clean(v) for k, v in fields.items()}}
    line = (json.dumps(record, allow_nan=False, default=str) + "\n").encode("utf-8")
    # one write() on an O_APPEND descriptor: lines from two writers never interleave
    fd = os.open(os.path.join(run_dir, "metrics.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def log(*, epoch: int, loss: float | None = None, val_loss: float | None = None,
        dice: float | None = None, lr: float | None = None, **more) -> None:
    """One finished epoch (0-based): `loss` is the training loss, `dice` the validation Dice."""
    fields = {"epoch": int(epoch), "train_loss": loss, "val_loss": val_loss, "val_dice": dice,
              "lr": lr, "val_dice_per_class": None, "ema_dice": None, "epoch_s": None,
              "data_wait_frac": None, "peak_mem_mb": None}
    for k, v in more.items():
        fields[_ALIASES.get(k, k)] = v
    _write("epoch", fields)


def log_iter(*, epoch: int, iter: int, loss: float | None = None, lr: float | None = None,
             samples_per_s: float | None = None) -> None:
    """Progress inside an epoch; every few seconds is plenty."""
    _write("iter", {"epoch": int(epoch), "iter": int(iter), "loss": loss, "lr": lr,
                    "samples_per_s": samples_per_s})


def checkpoint_saved(path: str, epoch: int, kind: str = "latest") -> None:
    """A checkpoint is on disk, complete; `epoch` = epochs done. kind: latest, best or final."""
    _write("checkpoint", {"kind": kind, "epoch": int(epoch), "path": os.path.abspath(path)})
