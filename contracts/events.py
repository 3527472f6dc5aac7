"""The metric-log events (ARCHITECTURE.md section 3) and a validator for tests and tools.

Readers ignore unknown keys and unknown events; writers must provide the required keys.
Field meanings are documented in docs/metrics-log.md.
"""

from __future__ import annotations

from typing import Any

REQUIRED: dict[str, tuple[str, ...]] = {
    "start": ("configuration", "fold", "pid", "host", "device", "attempt", "resumed_from",
              "epochs", "iterations_per_epoch", "batch_size"),
    "iter": ("epoch", "iter", "loss", "lr", "samples_per_s"),
    "epoch": ("epoch", "train_loss", "val_loss", "val_dice", "val_dice_per_class", "ema_dice",
              "lr", "epoch_s", "data_wait_frac", "peak_mem_mb"),
    "checkpoint": ("kind", "epoch", "path"),
    "progress": ("stage", "done", "total"),
    "end": ("status", "error", "exit_code", "message", "reason"),
}

# `start` of a pipeline-stage process (no fold, no epochs): identified by its `stage` key.
STAGE_START = ("stage", "pid", "host")

# Byte pattern of an `iter` line as contracts.jsonio.dumps writes it (json's default ", "
# and ": " separators): readers use it to skip decoding all but the newest `iter` line.
ITER_MARKER = b'"event": "iter"'

END_STATUSES = ("completed", "stopped", "failed")
# `end.reason`: why the process ended, one word a program can act on (docs/metrics-log.md).
END_REASONS = ("completed", "stopped", "usage", "dataset", "busy", "no_space", "oom", "crash",
               "interrupted")
# `end.stop_cause` (reason `stopped` only): SIGTERM -> signal, SIGUSR2 (Slurm's warning
# before the time limit) -> timeout, a Slurm preemption -> preempted.
STOP_CAUSES = ("signal", "timeout", "preempted")
CHECKPOINT_KINDS = ("latest", "best", "final")


def validate_event(obj: Any) -> list[str]:
    """Problems with one decoded event (empty when it follows the contract)."""
    if not isinstance(obj, dict):
        return ["not a JSON object"]
    problems = []
    if not isinstance(obj.get("t"), (int, float)):
        problems.append("missing or non-numeric 't'")
    name = obj.get("event")
    if not isinstance(name, str):
        return problems + ["missing 'event'"]
    required = REQUIRED.get(name, ())
    if name == "start" and "stage" in obj:
        required = STAGE_START  # a pipeline stage (preprocess, crossval, ...), not a fold
    for key in required:
        if key not in obj:
            problems.append(f"{name}: missing {key!r}")
    if name == "end" and obj.get("status") not in END_STATUSES:
        problems.append(f"end: status {obj.get('status')!r} not in {END_STATUSES}")
    if name == "end" and "reason" in obj and obj["reason"] not in END_REASONS:
        problems.append(f"end: reason {obj['reason']!r} not in {END_REASONS}")
    if name == "end" and obj.get("stop_cause") not in (None, *STOP_CAUSES):
        problems.append(f"end: stop_cause {obj['stop_cause']!r} not in {STOP_CAUSES}")
    if name == "checkpoint" and obj.get("kind") not in CHECKPOINT_KINDS:
        problems.append(f"checkpoint: kind {obj.get('kind')!r} not in {CHECKPOINT_KINDS}")
    return problems
