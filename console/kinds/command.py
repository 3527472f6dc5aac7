"""`trainer: command`: any training program, one process per fold, under console.runner.

The argument list (never a shell) gets its placeholders filled per fold; when the checkpoint
glob matches, the newest match is `{checkpoint}` and `resume_args` are appended. Metrics come
from the program's own `foldwatch.log(...)` calls (metrics: jsonl) or from a pattern over its
stdout (metrics: stdout_pattern).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from console.kinds.jobs import Job
from console.kinds import Launch
from console.kinds.results import NoResults
from console.runner.sources import newest_match
from contracts.experiment import Experiment, run_name


class CommandKind:
    def __init__(self, exp: Experiment) -> None:
        self.exp = exp
        self.s = exp.command
        self.cwd = exp.resolve(self.s.cwd) if self.s.cwd else exp.base_dir

    def build_jobs(self) -> list[Job]:
        lay = self.exp.layout
        return [Job(run_name(cfg, k), "fold", "train", lay.fold_dir(cfg, k), configuration=cfg,
                    fold=k, needs_gpu=True)
                for cfg in self.exp.configurations for k in self.exp.folds]

    def values(self, job: Job, device: str, checkpoint: str = "") -> dict[str, str]:
        return {"fold": str(job.fold), "device": "cuda" if device.startswith("gpu") else "cpu",
                "run_dir": str(job.run_dir), "checkpoint": checkpoint,
                "configuration": job.configuration or "", "experiment": self.exp.experiment}

    def checkpoint(self, job: Job, device: str) -> str | None:
        if not self.s.checkpoints:
            return None
        pattern = self.s.checkpoints.format(**self.values(job, device))
        if not os.path.isabs(pattern):
            pattern = str(self.cwd / pattern)
        found = newest_match(pattern)
        return found[0] if found else None

    def launch(self, job: Job, device: str, overrides: dict | None) -> Launch:
        s = self.s
        ckpt = self.checkpoint(job, device)
        values = self.values(job, device, ckpt or "")
        program = [a.format(**values) for a in s.argv]
        if ckpt:
            program += [a.format(**values) for a in s.resume_args]
        argv = [sys.executable, "-m", "console.runner", "--run-dir", str(job.run_dir),
                "--configuration", job.configuration, "--fold", str(job.fold),
                "--device", values["device"], "--cwd", str(self.cwd),
                "--metrics", "jsonl" if s.metrics == "jsonl" else "pattern"]
        if s.metrics == "stdout_pattern":
            argv += ["--pattern", s.pattern, "--first-epoch", str(s.first_epoch),
                     "--no-metrics-lines", str(s.no_metrics_after_lines),
                     "--no-metrics-s", str(s.no_metrics_after_s)]
        if s.checkpoints:
            glob = s.checkpoints.format(**self.values(job, device))
            argv += ["--checkpoints", glob if os.path.isabs(glob) else str(self.cwd / glob)]
        if s.epochs:
            argv += ["--epochs", str(s.epochs)]
        env = {"PYTHONUNBUFFERED": "1", **s.env}
        return Launch(argv + ["--"] + program, env, ckpt is not None)

    def results_source(self) -> NoResults:
        """Only folds: no pipeline stage writes results (docs/trainers.md)."""
        return NoResults(self.exp.layout)
