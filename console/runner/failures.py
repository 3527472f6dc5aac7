"""Known failures of supervised programs, recognised in their output: exit code, reason,
and a sentence saying what to do (contracts/exitcodes.py, the `end` event's message)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from contracts import exitcodes


@dataclass(frozen=True)
class Failure:
    reason: str          # the `end` event's short word
    exit_code: int
    message: str


# nnU-Net's data loader dies with this when an augmentation worker was killed (usually the
# kernel's OOM killer on host RAM); fewer workers is nnU-Net's own advice.
WORKERS_DIED = re.compile(r"[Bb]ackground workers are no longer alive")
_CUDA_OOM = re.compile(r"CUDA out of memory|torch\.(cuda\.)?OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED")
_NO_SPACE = re.compile(r"No space left on device")
_NO_DATASET = re.compile(r"Could not find a dataset with the ID (\d+)")
_OUR_USAGE = re.compile(r"^error: (.+)$", re.M)
# export.wandb.mode: online and no W&B login where the fold runs (nnU-Net's own W&B logger)
_WANDB_NO_KEY = re.compile(r"wandb\.errors\.\S*UsageError: No API key configured")


def recognise(output: str, returncode: int) -> Failure | None:
    """The known failure in a failed run's output tail, or None (then: a crash)."""
    if returncode == 0:
        return None
    if _CUDA_OOM.search(output):
        return Failure("oom", exitcodes.TRANSIENT,
                       "CUDA out of memory: the watchdog restarts the run; if it keeps "
                       "happening, use a smaller plan (e.g. a ResEnc M instead of L preset) or "
                       "a GPU with more memory")
    if _NO_SPACE.search(output):
        return Failure("no_space", exitcodes.NO_SPACE,
                       "no space left on the disk holding the results: free space, the run "
                       "resumes from its checkpoint")
    if m := _NO_DATASET.search(output):
        return Failure("usage", exitcodes.USAGE,
                       f"unknown nnU-Net dataset {m.group(1)}: no Dataset{int(m.group(1)):03d}_* "
                       "folder in nnUNet_raw, nnUNet_preprocessed or nnUNet_results; check "
                       "nnunet.dataset and nnunet.raw in the experiment file")
    if _WANDB_NO_KEY.search(output):
        return Failure("usage", exitcodes.USAGE,
                       "export.wandb.mode is online but W&B has no login where this run "
                       "started: run `wandb login` there (or set WANDB_API_KEY), or set "
                       "export.wandb.mode: offline and `wandb sync` later")
    if returncode == exitcodes.USAGE and (m := _OUR_USAGE.search(output)):
        return Failure("usage", exitcodes.USAGE, m.group(1).strip())
    if WORKERS_DIED.search(output):
        return Failure("crash", exitcodes.FAILED,
                       "nnU-Net's augmentation workers died (background workers are no longer "
                       "alive), usually host RAM: retried with fewer workers (nnUNet_n_proc_DA)")
    return None
