"""The experiment file's `slurm:` section (docs/slurm.md): sbatch settings and their checks."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from .strict import PositiveInt, Strict

_SLURM_TIME = r"^(\d+-\d{1,2}(:\d{1,2}(:\d{1,2})?)?|\d+(:\d{1,2}(:\d{1,2})?)?)$"


def slurm_time_seconds(text: str) -> int:
    """Seconds in a Slurm time limit: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (man sbatch)."""
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:
        h, m, s = (parts + [0, 0])[:3]
    elif len(parts) == 1:
        h, m, s = 0, parts[0], 0
    elif len(parts) == 2:
        h, m, s = 0, parts[0], parts[1]
    else:
        h, m, s = parts
    return ((int(days or 0) * 24 + h) * 60 + m) * 60 + s


class Slurm(Strict):
    """The `slurm:` section: how each run becomes an sbatch job (docs/slurm.md)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: str = "1-00:00:00"                 # sbatch --time, per job (each resubmission)
    gpus_per_run: Annotated[int, Field(ge=0)] = 1  # --gres=gpu:N for folds and predict
    gpu_type: str | None = None                    # --gres=gpu:<type>:N
    cpus_per_run: PositiveInt = 4                  # --cpus-per-task
    mem_per_run: str | None = "32G"                # --mem; null = the partition's default
    extra_sbatch: list[str] = []                   # more options, e.g. ["--constraint=a100"]
    # --signal=B:USR2@<s>: ask the run to checkpoint this long before the time limit;
    # null = 300 s, or a fifth of a shorter time limit.
    checkpoint_before_s: Annotated[int, Field(ge=10, le=65535)] | None = None
    job_name_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]*$")] = "fw-"
    poll_interval_s: Annotated[float, Field(gt=0)] = 10.0

    @field_validator("time_limit")
    @classmethod
    def _time(cls, v):
        if v in ("infinite", "UNLIMITED") or not re.match(_SLURM_TIME, v):
            raise ValueError("expected a Slurm time limit: minutes, H:MM:SS or D-HH:MM:SS "
                             "(e.g. '90', '4:00:00', '2-00:00:00')")
        if slurm_time_seconds(v) < 60:
            raise ValueError("Slurm's smallest time limit is 1 minute")
        return v

    @field_validator("mem_per_run")
    @classmethod
    def _mem(cls, v):
        if v is not None and not re.match(r"^\d+[KMGT]?$", v):
            raise ValueError("expected a size like 32G, 16000M or 16000 (MB), as sbatch --mem")
        return v

    @field_validator("extra_sbatch")
    @classmethod
    def _extra(cls, v):
        for opt in v:
            if not opt.startswith("-") or "\n" in opt or "\r" in opt:
                raise ValueError(f"each extra sbatch option is one option starting with '-', "
                                 f"e.g. '--constraint=a100'; got {opt!r}")
            if opt.split("=")[0] in _OWNED_SBATCH:
                raise ValueError(f"{opt.split('=')[0]} is set by foldwatch (job name, logs, "
                                 "signal); use the slurm: keys instead")
        return v

    @property
    def signal_lead_s(self) -> int:
        """Seconds before the time limit at which the job gets SIGUSR2."""
        if self.checkpoint_before_s is not None:
            return self.checkpoint_before_s
        return max(10, min(300, slurm_time_seconds(self.time_limit) // 5))

    @model_validator(mode="after")
    def _lead_fits(self):
        limit = slurm_time_seconds(self.time_limit)
        if self.checkpoint_before_s is not None and self.checkpoint_before_s >= limit:
            raise ValueError(f"checkpoint_before_s ({self.checkpoint_before_s}) must be shorter "
                             f"than time_limit ({self.time_limit} = {limit}s), or the job would "
                             "be asked to checkpoint before it starts")
        return self


# Options the backend writes itself: a user's copy would break finding or resuming the job.
_OWNED_SBATCH = ("--job-name", "-J", "--output", "-o", "--error", "-e", "--open-mode",
                 "--signal", "--comment", "--parsable", "--requeue", "--no-requeue",
                 "--array", "-a", "--wrap")
