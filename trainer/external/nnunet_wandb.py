"""nnU-Net 2.8's own W&B logger for a fold, started so that no W&B problem stops training.

nnU-Net creates its `WandbLogger` inside the trainer's constructor (`MetaLogger`), where any
W&B failure ends the fold, and a resume (`--c`) reads the run id from
`fold_<k>/wandb/latest-run/run-<id>.wandb`. Two things turned one failed attempt into a
crash loop (seen in wandb 0.31):

- A `WANDB_SERVICE` inherited from whatever started foldwatch (a notebook or script that used
  W&B, a test process, a Slurm job exporting its environment) makes `wandb.init` use that
  process's W&B service instead of starting the fold's own. A killed attempt's run then stays
  open in that foreign service, and the resumed attempt is refused: "run ID <id> is in use".
  `own_service` drops it: each attempt starts its own `wandb-core` (its own session, with
  `--pid` of the fold process), which exits within a second of the fold's death, kill or not.
- A failed `wandb.init` still creates `offline-run-<time>-<id>/` without a `run-<id>.wandb`
  and points `latest-run` at it: every later `--c` stops on nnU-Net's `next(...)`
  (StopIteration). `repair_latest_run` points it back at the newest folder of that run that
  has a `.wandb` file.

`start_wandb` builds nnU-Net's own `WandbLogger` after the trainer (the trainer is built with
`nnUNet_wandb_enabled=0`, see `wandb_wanted`) and attaches it to the trainer's `MetaLogger`, as
nnU-Net would have; if it cannot start, the fold trains without it and says so. A usage error
(online without a login) is the user's setting, not bad luck: it still ends the fold (exit 2).
Nothing here deletes W&B data: what cannot be used is moved aside.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Callable

ENABLED = "nnUNet_wandb_enabled"
# W&B's run folders: offline-run-20261207_053440-<id> (offline) or run-<time>-<id> (online)
RUN_FOLDER = re.compile(r"^(?:offline-)?run-(\d{8}_\d{6})-(.+)$")
WARNING_MARKER = "foldwatch warning"     # console.runner.nnunet_log: a `warning` event


def own_service() -> None:
    """Start this process's own W&B service: never use one named by an inherited
    WANDB_SERVICE (it may hold a killed attempt's run, or be on another machine)."""
    os.environ.pop("WANDB_SERVICE", None)


def wandb_wanted() -> bool:
    """nnU-Net's reading of nnUNet_wandb_enabled (a wrong value: nnU-Net's own error)."""
    return os.environ.get(ENABLED, "0") in ("1", "True", "true")


def _has_run_file(folder: Path, run_id: str | None = None) -> bool:
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return False
    if run_id is not None:
        return f"run-{run_id}.wandb" in names
    return any(n.endswith(".wandb") for n in names)


def repair_latest_run(fold_dir: Path) -> str | None:
    """Make `fold_dir/wandb/latest-run` a folder nnU-Net's `--c` can read the run id from.

    Points it at the newest run folder of the same id that has its `run-<id>.wandb` (any id
    when `latest-run` is missing or names none); with none at all, moves `wandb/` aside so
    that nnU-Net starts a new run. Returns what was done, for the log; None when nothing was
    needed."""
    wandb_dir = fold_dir / "wandb"
    latest = wandb_dir / "latest-run"
    if not wandb_dir.is_dir() or _has_run_file(latest):
        return None
    wanted = None
    if latest.is_symlink():
        m = RUN_FOLDER.match(Path(os.readlink(latest)).name)
        wanted = m.group(2) if m else None
    usable = []
    for folder in wandb_dir.iterdir():
        m = RUN_FOLDER.match(folder.name)
        if (m and folder.is_dir() and not folder.is_symlink() and wanted in (None, m.group(2))
                and _has_run_file(folder, m.group(2))):
            usable.append((m.group(1), folder.stat().st_mtime, folder.name))
    broken = os.readlink(latest) if latest.is_symlink() else ("missing" if not latest.exists()
                                                             else "a folder")
    if usable:
        target = max(usable)[2]
        if latest.exists() and not latest.is_symlink():
            latest.rename(_aside(latest))           # W&B writes a link; keep whatever this is
        tmp = wandb_dir / f".latest-run.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)                      # relative, as W&B writes it
        os.replace(tmp, latest)
        return (f"W&B: {latest} pointed at {broken}, which has no .wandb file (an attempt "
                f"whose wandb.init failed); pointed it at {target} so the resumed fold continues "
                "that run")
    aside = _aside(wandb_dir)
    wandb_dir.rename(aside)
    return (f"W&B: no run folder in {wandb_dir} has a .wandb file (latest-run: {broken}), so "
            f"the run cannot be continued; moved that folder to {aside} and this attempt starts "
            "a new W&B run")


def _aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d_%H%M%S")
    candidate, n = path.with_name(f"{path.name}.unusable-{stamp}"), 1
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = path.with_name(f"{path.name}.unusable-{stamp}-{n}")
    return candidate


def start_wandb(trainer, resume: bool, config: dict, warn: Callable[[str], None]) -> bool:
    """nnU-Net's WandbLogger for `trainer`, as its MetaLogger would have made it (same output
    folder, resume flag and first config); on any failure but a usage error, `warn` and train
    without W&B. True when W&B logs this attempt."""
    fold_dir = Path(trainer.output_folder)
    try:
        note = repair_latest_run(fold_dir) if resume else None
    except OSError as e:
        note = None
        warn(f"W&B: could not repair {fold_dir / 'wandb' / 'latest-run'} ({e})")
    if note:
        warn(note)
    from nnunetv2.training.logging.nnunet_logger import WandbLogger
    try:
        from wandb.errors import UsageError as usage_error
    except ImportError:             # nnU-Net's WandbLogger says that W&B is not installed
        usage_error = ()
    try:
        logger = WandbLogger(str(fold_dir), resume)
        logger.update_config(config)
    except usage_error:
        raise                  # the user's W&B setting: console.runner.failures says what to do
    except Exception as e:
        warn(f"W&B could not start ({type(e).__module__}.{type(e).__name__}: {e}); this "
             "attempt trains without W&B (metrics are still in metrics.jsonl and nnU-Net's "
             "training log), the next resume tries again")
        return False
    trainer.logger.loggers.append(logger)
    return True
