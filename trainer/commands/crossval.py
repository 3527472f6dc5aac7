"""`python -m trainer crossval --experiment F --configuration C`."""

from __future__ import annotations

from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--experiment", required=True, type=Path)
    p.add_argument("--configuration", required=True)


def run(args) -> int:
    from contracts.errors import ConfigError
    from contracts.experiment import load_experiment
    from contracts.layout import crossval_stage

    from trainer.evaluation.crossval import gather
    from trainer.runtime.runlog import RunLog

    exp = load_experiment(args.experiment)
    if args.configuration not in exp.configurations:
        raise ConfigError(f"{exp.source}: configuration {args.configuration!r} is not in the "
                          f"experiment (has: {', '.join(exp.configurations)})")
    stage = crossval_stage(args.configuration)
    with RunLog(exp.layout.stage_dir(stage), stage=stage) as log:
        log.progress(stage, 0, 1)
        s = gather(exp, args.configuration)
        log.progress(stage, 1, 1)
        print(f"{args.configuration}: {len(s['metric_per_case'])} cases, foreground mean Dice "
              f"{s['foreground_mean']['Dice']:.4f} -> "
              f"{exp.layout.crossval(args.configuration) / 'summary.json'}")
    return log.exit_code
