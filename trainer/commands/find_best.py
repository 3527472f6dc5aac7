"""`python -m trainer find-best --experiment F`."""

from __future__ import annotations

from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--experiment", required=True, type=Path)


def run(args) -> int:
    from contracts.experiment import load_experiment
    from contracts.layout import FIND_BEST

    from trainer.runtime.runlog import RunLog
    from trainer.evaluation.selection import find_best

    exp = load_experiment(args.experiment)
    with RunLog(exp.layout.stage_dir(FIND_BEST), stage=FIND_BEST) as log:
        r = find_best(exp, log)
        for name, dice in r["best"]["candidates"].items():
            print(f"  {name:<30} {dice if dice is not None else float('nan'):.4f}")
        print(f"best: {' + '.join(r['best']['configurations'])}; postprocessing: "
              f"{r['postprocessing']} -> {exp.layout.best_configuration}")
    return log.exit_code
