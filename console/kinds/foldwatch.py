"""foldwatch's own trainer: `python -m trainer <command>` per job (ARCHITECTURE.md s. 5)."""

from __future__ import annotations

import os
import shlex
import sys

from console.kinds.jobs import Job, build_jobs
from console.kinds import Launch
from console.kinds.results import LayoutResults
from contracts.experiment import Experiment
from contracts.layout import run_files


def trainer_prefix() -> list[str]:
    """`python -m trainer`, or the shlex-split FOLDWATCH_TRAINER (tests use a stand-in)."""
    custom = os.environ.get("FOLDWATCH_TRAINER")
    if custom:
        return shlex.split(custom)
    return [sys.executable, "-m", "trainer"]


class FoldwatchKind:
    def __init__(self, exp: Experiment) -> None:
        self.exp = exp

    def build_jobs(self) -> list[Job]:
        return build_jobs(self.exp)

    def launch(self, job: Job, device: str, overrides: dict | None) -> Launch:
        resume = job.kind == "fold" and run_files(job.run_dir)["latest"].exists()
        argv = trainer_prefix() + job.argv(self.exp.source, resume=resume,
                                           overrides=overrides if job.kind == "fold" else None)
        return Launch(argv, {}, resume)

    def results_source(self) -> LayoutResults:
        return LayoutResults(self.exp.layout, list(self.exp.configurations))
