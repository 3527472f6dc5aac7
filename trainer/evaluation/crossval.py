"""Cross-validation summary of one configuration: every fold's validation cases together."""

from __future__ import annotations

from contracts.errors import ConfigError, DatasetError
from contracts.experiment import Experiment
from contracts.jsonio import atomic_write_json, read_json

from trainer.evaluation.metrics import summarize
from trainer.planning.plans import Plan


def read_splits(exp: Experiment) -> list[dict]:
    path = exp.layout.splits
    if not path.exists():
        raise ConfigError(f"{path}: no splits yet; run `python -m trainer plan --experiment "
                          f"{exp.source}` first")
    return read_json(path)


def case_folds(exp: Experiment) -> dict[str, int]:
    """Validation case id -> its fold, for the experiment's folds."""
    splits = read_splits(exp)
    return {case: k for k in exp.folds for case in splits[k]["val"]}


def gather(exp: Experiment, configuration: str) -> dict:
    """Write and return `<configuration>/crossval/summary.json` from the folds' validations."""
    layout = exp.layout
    plan = Plan.load(layout.plan(configuration))
    splits = read_splits(exp)
    missing = [k for k in exp.folds
               if not (layout.validation(configuration, k) / "summary.json").exists()]
    if missing:
        raise ConfigError(f"{configuration}: fold(s) {', '.join(map(str, missing))} have no "
                          "validation/summary.json (not trained yet, or validation interrupted): "
                          "train or resume them first (`python -m trainer train ... --resume`)")
    per_case, problems = [], []
    for k in exp.folds:
        summary = read_json(layout.validation(configuration, k) / "summary.json")
        cases = {c.get("case") for c in summary.get("metric_per_case", [])}
        lacking = sorted(set(splits[k]["val"]) - cases)
        if lacking:
            problems.append(f"{configuration} fold {k}: validation summary lacks case(s) "
                            f"{', '.join(lacking[:10])}; resume the fold to finish its validation")
        for c in summary.get("metric_per_case", []):
            per_case.append({**c, "fold": k})
    if problems:
        raise DatasetError(problems, header="incomplete validation")
    result = summarize(per_case, plan.eval_keys)
    result.update(configuration=configuration, folds=list(exp.folds))
    atomic_write_json(layout.crossval(configuration) / "summary.json", result)
    return result
