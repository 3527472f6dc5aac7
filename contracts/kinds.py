"""Experiment-file sections of the trainer kinds other than foldwatch's own (docs/trainers.md).

`trainer: nnunetv2` runs nnU-Net v2's workflow (section `nnunet:`); `trainer: command` runs any
training program as an argument list (section `command:`). Pydantic and the standard library
only: the console validates these on a login node.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from .strict import PositiveInt, Strict

TRAINER_KINDS = ("foldwatch", "nnunetv2", "command")

# What a command's arguments may name; console.kinds.command fills them in per job.
PLACEHOLDERS = ("fold", "device", "run_dir", "checkpoint", "configuration", "experiment")

# Named groups a stdout pattern may capture, and the event field each one becomes.
PATTERN_FIELDS = {"epoch": "epoch", "epochs": "epochs", "iter": "iter", "loss": "train_loss",
                  "train_loss": "train_loss", "val_loss": "val_loss", "dice": "val_dice",
                  "val_dice": "val_dice", "ema_dice": "ema_dice", "lr": "lr",
                  "epoch_s": "epoch_s"}


def placeholders_in(text: str) -> list[str]:
    """Field names of `{name}` placeholders in one argument; ValueError for broken braces."""
    names = []
    for _, name, spec, conv in string.Formatter().parse(text):
        if name is None:
            continue
        if spec or conv or not name:
            raise ValueError(f"{text!r}: write placeholders as plain {{name}}")
        names.append(name)
    return names


def _check_placeholders(values: list[str], where: str) -> None:
    for i, arg in enumerate(values):
        try:
            names = placeholders_in(arg)
        except ValueError as e:
            raise ValueError(f"{where}[{i}]: {e} (a literal brace is written {{{{ or }}}})")
        for name in names:
            if name not in PLACEHOLDERS:
                raise ValueError(f"{where}[{i}]: unknown placeholder {{{name}}} in {arg!r}; "
                                 f"known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")


class NnunetSettings(Strict):
    """`nnunet:` — which nnU-Net dataset, plans and trainer, and where nnU-Net's folders are."""

    dataset: Union[PositiveInt, Annotated[str, Field(pattern=r"^Dataset\d{3}_\S+$")]]
    plans: str = "nnUNetPlans"              # plans identifier (-p), e.g. nnUNetResEncUNetLPlans
    planner: str | None = None              # -pl for plan_and_preprocess, e.g. nnUNetPlannerResEncL
    # -gpu_memory_target of plan_and_preprocess (GB; nnU-Net's default 8, ResEnc L 24): smaller
    # patches; the plans are then written under `plans` (-overwrite_plans_name)
    gpu_memory_target_gb: Annotated[float, Field(gt=0)] | None = None
    trainer: str = "nnUNetTrainer"          # -tr; a variant name or module.Class
    npz: bool = True                        # --npz: needed for find-best's ensembles
    plan: bool = True                       # run nnUNetv2_plan_and_preprocess as the first stage
    verify_dataset_integrity: bool = True
    raw: Path | None = None                 # default: $nnUNet_raw
    preprocessed: Path | None = None        # default: $nnUNet_preprocessed
    results: Path | None = None             # default: $nnUNet_results
    epochs: PositiveInt | None = None       # shorten a run (smoke tests); default: the trainer's
    iterations_per_epoch: PositiveInt | None = None
    val_iterations: PositiveInt | None = None
    workers: Annotated[int, Field(ge=0)] | None = None   # nnUNet_n_proc_DA (augmentation workers)
    # -np/-npfp of plan_and_preprocess, -npp/-nps of predict, -np of the others, and
    # $nnUNet_def_n_proc (nnU-Net's pools without a flag: a fold's final validation export)
    processes: PositiveInt | None = None
    # -npp/-nps of nnUNetv2_predict (default: processes); 0 = nnU-Net's sequential predictor,
    # no worker processes (each one imports torch: dearer than it saves on small test sets)
    predict_processes: Annotated[int, Field(ge=0)] | None = None
    stagger_folds: bool = True              # later folds wait until the first has started training
    # nnU-Net's test-time mirroring in a fold's final validation and in nnUNetv2_predict
    # (false: --disable_tta; 4x (2d) / 8x (3d) fewer network passes, usually a little less Dice)
    tta: bool = True

    @property
    def dataset_arg(self) -> str:
        return str(self.dataset)


class CommandSettings(Strict):
    """`command:` — any training program, never through a shell."""

    argv: Annotated[list[str], Field(min_length=1)]
    resume_args: list[str] = []             # appended when a checkpoint matches `checkpoints`
    checkpoints: str | None = None          # glob, relative to cwd; the newest match resumes
    cwd: Path | None = None                 # default: the experiment file's folder
    env: dict[str, str] = {}
    metrics: Literal["jsonl", "stdout_pattern"] = "jsonl"
    pattern: str | None = None              # stdout_pattern: a regex with named groups
    first_epoch: Literal[0, 1] = 0          # the number the program prints for its first epoch
    epochs: PositiveInt | None = None       # for the ETA when the program does not say
    no_metrics_after_lines: PositiveInt = 400
    no_metrics_after_s: Annotated[float, Field(gt=0)] = 900

    @field_validator("argv")
    @classmethod
    def _argv(cls, v):
        _check_placeholders(v, "argv")
        if not v[0].strip():
            raise ValueError("argv[0] is empty: name the program to run")
        return v

    @field_validator("resume_args")
    @classmethod
    def _resume(cls, v):
        _check_placeholders(v, "resume_args")
        return v

    @field_validator("checkpoints")
    @classmethod
    def _glob(cls, v):
        if v is not None:
            _check_placeholders([v], "checkpoints")
        return v

    @model_validator(mode="after")
    def _pattern(self):
        if self.metrics == "stdout_pattern":
            if not self.pattern:
                raise ValueError("metrics: stdout_pattern needs a `pattern:` (a regex with named "
                                 "groups such as (?P<epoch>\\d+) and (?P<loss>[\\d.]+))")
            compile_pattern(self.pattern)
        if self.resume_args and not self.checkpoints:
            raise ValueError("resume_args without `checkpoints:` (a glob): foldwatch cannot "
                             "know when there is something to resume from")
        return self


def compile_pattern(text: str) -> re.Pattern:
    """The stdout pattern, checked: valid regex, an `epoch` group, only known group names."""
    try:
        rx = re.compile(text)
    except re.error as e:
        raise ValueError(f"pattern is not a valid regular expression: {e}") from None
    groups = set(rx.groupindex)
    if "epoch" not in groups:
        raise ValueError("pattern has no (?P<epoch>...) group: foldwatch needs the epoch number "
                         f"to place the other values (groups found: {sorted(groups) or 'none'})")
    unknown = groups - set(PATTERN_FIELDS)
    if unknown:
        raise ValueError(f"pattern groups {sorted(unknown)} are not known; use "
                         f"{', '.join(PATTERN_FIELDS)}")
    return rx
