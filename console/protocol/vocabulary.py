"""The names and definitions of every figure the console shows, shared by the TUI table,
the headless summary, `foldwatch status` and its --json (documented in docs/console.md)."""

from __future__ import annotations

from console.protocol.model import RunView
from console.protocol.fmt import duration, num, seconds

# (key, header, definition). Keys are also the --json "columns" names.
COLUMNS: list[tuple[str, str, str]] = [
    ("config", "Config", "configuration (2d, 3d_fullres, ...); a completed find-best and the "
                         "test-set stages after it: the chosen model (2d+3d_fullres: their "
                         "ensemble); '-' for other stages of the whole experiment"),
    ("fold", "Fold/stage", "cross-validation fold, or the pipeline stage"),
    ("state", "State", "queued, starting, running, stalled, backoff, waiting (for disk space), "
                       "completed, failed, stopped; dead: its process is gone while no "
                       "supervisor watched (`foldwatch up` judges it)"),
    ("device", "Device", "where it runs: gpu3, cpu1 (a CPU slot), or a Slurm node"),
    ("epoch", "Epoch", "epochs done / epochs (stages: items done / items; a completed "
                       "test-set stage: the cases it predicted or evaluated)"),
    ("val_dice", "val Dice", "folds: the last epoch's pseudo-Dice: mean over foreground "
                             "classes of 2TP/(2TP+FP+FN) summed over the validation patches "
                             "(nnU-Net). Completed stages: the foreground mean Dice of what "
                             "they made: crossval, the configuration's cross-validation; "
                             "find-best, the chosen model's; postprocess, the chosen model's "
                             "cross-validation after postprocessing; predict (with test "
                             "labels) and evaluate, the test set's"),
    ("ema", "EMA", "exponential moving average of val Dice: 0.9 x previous + 0.1 x new"),
    ("best", "best EMA", "the highest EMA so far; best.pt is the checkpoint at that epoch "
                         "(nnU-Net's 'best EMA pseudo Dice')"),
    ("loss", "train loss", "mean training loss (Dice + CE) over the last whole epoch"),
    ("speed", "samples/s", "training samples per second over the last whole epoch: "
                           "batch x grad accumulation x iterations / epoch time"),
    ("epoch_s", "epoch time", "wall time of the last epoch (training + pseudo-Dice)"),
    ("eta", "ETA", "time left for this run: epochs left x smoothed epoch time"),
    ("restarts", "restarts", "times the watchdog restarted it"),
    ("age", "last event", "time since the run last wrote to its metrics log"),
    ("note", "note", "why it waits, what went wrong, a stage's result, or where an imported "
                     "fold was trained (imported from HOST, DATE)"),
]
HEADERS = {k: h for k, h, _ in COLUMNS}
# One colour per state for every table (rich style names).
STATE_STYLE = {"queued": "dim", "starting": "cyan", "running": "green", "stalled": "bold yellow",
               "backoff": "yellow", "waiting": "yellow", "completed": "bold blue",
               "failed": "bold red", "stopped": "magenta", "dead": "bold red"}
STAGE_NAMES = ("plan", "preprocess", "crossval", "find-best", "predict", "ensemble",
               "postprocess", "evaluate")


def cells(r: RunView) -> dict[str, str]:
    """Plain text of every column for one run (the TUI adds colour and a progress bar)."""
    if r.kind == "fold":
        config, fold = r.configuration or r.label, "" if r.fold is None else str(r.fold)
    else:
        stage = next((s for s in STAGE_NAMES if r.key.startswith(s)), r.label)
        # nnU-Net's per-fold stages (predict-3d_lowres-fold2): the fold beside the stage
        config, fold = r.configuration or "-", stage if r.fold is None else f"{stage} {r.fold}"
        config = r.outcome_model or config
    if r.epochs:
        epoch = f"{r.epoch or 0}/{r.epochs}"
    elif r.outcome_cases is not None:
        epoch = f"{r.outcome_cases} cases"
    elif r.progress:
        epoch = f"{r.progress[0]}/{r.progress[1]}"
    else:
        epoch = "-"
    active = r.state in ("starting", "running", "stalled")
    return {
        "config": config, "fold": fold, "state": r.state, "device": r.device or "-",
        "epoch": epoch, "val_dice": num(r.val_dice if r.kind == "fold" else r.outcome_dice),
        "ema": num(r.ema_dice),
        "best": num(r.best_dice), "loss": num(r.train_loss),
        "speed": "-" if r.samples_per_s is None else f"{r.samples_per_s:.1f}",
        "epoch_s": seconds(r.epoch_s),
        "eta": duration(r.eta_s) if active else "-",
        "restarts": str(r.restarts), "age": duration(r.last_event_age_s),
        "note": note(r),
    }


def progress_fraction(r: RunView) -> float | None:
    if r.state == "completed":
        return 1.0
    if r.epochs:
        return (r.epoch or 0) / r.epochs
    if r.progress and r.progress[1]:
        return r.progress[0] / r.progress[1]
    return None


def note(r: RunView) -> str:
    """The run's message; a completed stage's outcome; a queued stage's wait; an imported
    fold's origin first."""
    if r.state == "completed" and r.outcome:
        return r.outcome
    text = r.message or ""
    if r.run_now and r.state == "queued":
        text = f"run now: {text}" if text else "run now: waiting for a free slot"
    elif r.state == "queued" and not text and r.kind == "stage":
        text = "waiting for a free slot"
    if r.origin:
        text = f"imported from {r.origin}" + (f"; {text}" if text else "")
    return text
