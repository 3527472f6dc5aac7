"""The job graph of an experiment: plan -> preprocess-<cfg> -> folds -> crossval-<cfg> ->
find-best -> predict, honouring the experiment's `pipeline:` switches (ARCHITECTURE.md s. 7)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from contracts.experiment import CASCADE, LOWRES, Experiment, run_name
from contracts.jsonio import read_json
from contracts.layout import (FIND_BEST, PLAN, PREDICT, crossval_stage, preprocess_stage)


def configured_batch(exp: Experiment, cfg, configuration: str) -> int:
    """The batch size a fold trains with: the experiment's, or the plan's for `batch_size: auto`."""
    if cfg.batch_size != "auto":
        return int(cfg.batch_size)
    try:
        return int(read_json(exp.layout.plan(configuration))["batch_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return 2        # no readable plan yet: nnU-Net's minimum batch


@dataclass
class Job:
    key: str                       # "3d_fullres/0" or a stage name ("preprocess-2d", "find-best")
    kind: str                      # "fold" or "stage"
    command: str                   # trainer command
    run_dir: Path
    configuration: str | None = None
    fold: int | None = None
    depends_on: tuple[str, ...] = ()
    needs_gpu: bool = False        # only folds and prediction use a GPU
    extra: list[str] = field(default_factory=list)
    starts_after: tuple[str, ...] = ()   # jobs that must have trained an epoch first (stagger)
    data: dict = field(default_factory=dict)   # what the trainer kind needs to launch it

    @property
    def label(self) -> str:
        return self.key

    def argv(self, experiment_file: Path, *, resume: bool = False,
             overrides: dict | None = None) -> list[str]:
        """Trainer arguments (without the `python -m trainer` prefix), ARCHITECTURE.md s. 5."""
        args = [self.command, "--experiment", str(experiment_file)]
        if self.configuration is not None and self.command != FIND_BEST:
            args += ["--configuration", self.configuration]
        if self.kind == "fold":
            args += ["--fold", str(self.fold)]
            if resume:
                args.append("--resume")
            if overrides:
                if overrides.get("batch_size"):
                    args += ["--batch-size", str(overrides["batch_size"])]
                if overrides.get("grad_accumulation"):
                    args += ["--grad-accumulation", str(overrides["grad_accumulation"])]
        return args + self.extra


def build_jobs(exp: Experiment) -> list[Job]:
    """Every job of the experiment in scheduling priority order."""
    lay = exp.layout
    jobs = [Job(PLAN, "stage", "plan", lay.stage_dir(PLAN))]
    crossvals = []
    for cfg in exp.configurations:
        pre = preprocess_stage(cfg)
        jobs.append(Job(pre, "stage", "preprocess", lay.stage_dir(pre), configuration=cfg,
                        depends_on=(PLAN,)))
    folds_by_cfg: dict[str, list[str]] = {}
    # The cascade's folds train on 3d_lowres' prediction of every training case, made by the
    # lowres fold that held it out: each cascade fold waits for ALL lowres folds (nnU-Net's rule)
    lowres = tuple(run_name(LOWRES, k) for k in exp.folds) if CASCADE in exp.configurations else ()
    for cfg in exp.configurations:
        for k in exp.folds:
            key = run_name(cfg, k)
            folds_by_cfg.setdefault(cfg, []).append(key)
            deps = (preprocess_stage(cfg),) + (lowres if cfg == CASCADE else ())
            jobs.append(Job(key, "fold", "train", lay.fold_dir(cfg, k), configuration=cfg,
                            fold=k, depends_on=deps, needs_gpu=True))
    p = exp.pipeline
    if p.evaluate:
        for cfg in exp.configurations:
            name = crossval_stage(cfg)
            crossvals.append(name)
            jobs.append(Job(name, "stage", "crossval", lay.stage_dir(name), configuration=cfg,
                            depends_on=tuple(folds_by_cfg[cfg])))
    all_folds = tuple(k for ks in folds_by_cfg.values() for k in ks)
    before_best = tuple(crossvals) or all_folds
    if p.find_best:
        jobs.append(Job(FIND_BEST, "stage", "find-best", lay.stage_dir(FIND_BEST),
                        depends_on=before_best))
    if p.predict_test:
        deps = (FIND_BEST,) if p.find_best else before_best
        jobs.append(Job(PREDICT, "stage", "predict", lay.stage_dir(PREDICT),
                        depends_on=deps, needs_gpu=True))
    return jobs
