"""Trainer kinds (docs/trainers.md): how an experiment's jobs are built and launched.

The engine asks the experiment's kind for its job graph and, per launch, for the argument list,
the extra environment and whether it resumes, and where its results are read. foldwatch's own trainer, nnU-Net v2 and any
command differ only here; scheduling, watchdog, tailing and views are shared.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

from console.kinds.jobs import Job
from console.kinds.results import ResultsSource
from contracts.experiment import Experiment


class Launch(NamedTuple):
    argv: list[str]
    env: dict[str, str]
    resume: bool


class Kind(Protocol):
    def build_jobs(self) -> list[Job]: ...
    def launch(self, job: Job, device: str, overrides: dict | None) -> Launch: ...
    # where its pipeline writes results, for the views (console/kinds/results.py)
    def results_source(self) -> ResultsSource: ...


def kind_for(exp: Experiment, *, launching: bool = True) -> Kind:
    """The adapter for `exp.trainer`; ConfigError when its settings cannot launch anything
    here (only checked when `launching`: a read-only console just shows the jobs)."""
    if exp.trainer == "nnunetv2":
        from console.kinds.nnunet import NnunetKind
        return NnunetKind(exp, launching=launching)
    if exp.trainer == "command":
        from console.kinds.command import CommandKind
        return CommandKind(exp)
    from console.kinds.foldwatch import FoldwatchKind
    return FoldwatchKind(exp)
