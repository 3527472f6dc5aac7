"""`python -m trainer plan --experiment FILE`: check the dataset, fingerprint, plans, splits."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, type=Path, help="experiment YAML file")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: up to 4)")
    parser.add_argument("--skip-check", action="store_true",
                        help="do not run check-dataset first (it reads every file)")


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def write_splits(exp, layout, case_ids: list[str], log) -> list[dict]:
    """splits.json: the user's file or nnU-Net's KFold; an existing different one is kept."""
    from contracts.jsonio import atomic_write_json, read_json
    from trainer.data.splits import kfold_splits, percent_split, read_splits_file, validate_splits

    if exp.splits is not None:
        src = exp.resolve(exp.splits)
        wanted = validate_splits(read_splits_file(src), case_ids, str(src), exp.folds)
        source = str(src)
    elif exp.validation_percent is not None:
        wanted = percent_split(case_ids, exp.validation_percent)
        source = f"validation_percent {exp.validation_percent:g}"
    else:
        wanted, source = kfold_splits(case_ids), "nnU-Net KFold(5, shuffle, seed 12345)"
    path = layout.splits
    if path.exists():
        try:
            existing = read_json(path)
        except ValueError:
            existing = None
        if existing != wanted:
            _warn(f"{path} exists and differs from the splits this run would write ({source}); "
                  "it is KEPT because trained folds depend on it. Delete it (and the folds trained "
                  "on it) to use the new splits.")
            log.event("splits_kept", path=str(path), wanted_source=source)
            return existing
        return existing
    atomic_write_json(path, wanted)
    return wanted


def run(args: argparse.Namespace) -> int:
    from contracts.experiment import load_experiment
    from contracts.layout import PLAN
    from contracts.jsonio import atomic_write_json
    from trainer.data.checks import require_valid
    from trainer.data.datasets import load_dataset, require_consistent
    from trainer.planning.fingerprint import compute_fingerprint
    from contracts.errors import ConfigError
    from trainer.planning.family import plan_family
    from trainer.planning.plans import Plan
    from trainer.runtime.planlock import plans_lock
    from trainer.runtime.runlog import RunLog
    from trainer.runtime.workers import default_workers

    exp = load_experiment(args.experiment)
    layout = exp.layout
    workers = args.workers or default_workers()
    with RunLog(layout.stage_dir(PLAN), stage=PLAN, experiment=exp.experiment) as log, \
            plans_lock(layout.plans_dir, exclusive=True, log=log):
        info = require_consistent(load_dataset(exp.dataset_path))
        n = len(info.cases)
        if not args.skip_check:
            log.progress("check-dataset", 0, n)
            require_valid(info, workers)
            log.progress("check-dataset", n, n)
        fp = compute_fingerprint(info, workers, lambda d, t: log.progress("fingerprint", d, t))
        atomic_write_json(layout.fingerprint, fp)
        for name, plan in plan_family(exp.configurations, fp, info.file_ending).items():
            old = layout.plan(name)
            if old.exists():
                try:
                    changed = Plan.load(old).digest() != plan.digest()
                except ConfigError:
                    changed = True
                if changed:
                    _warn(f"{old}: the plan changed (dataset or experiment edited); preprocessing "
                          "redoes the cache if spacing or normalization changed, and folds trained "
                          "on the old plan will not resume")
                    log.event("plan_changed", configuration=name, path=str(old))
            plan.save(old)
            vram = plan.extra.get("vram", {})
            print(f"{name}: spacing {[round(s, 3) for s in plan.spacing]} patch {plan.patch_size} "
                  f"levels {len(plan.strides)} batch {plan.batch_size} ({vram.get('preset')}, "
                  f"nnU-Net estimate {vram.get('estimate', 0) / 1e6:.1f}M of "
                  f"{vram.get('reference', 0) / 1e6:.0f}M for {vram.get('target_gb')} GB"
                  + (f", after {plan.previous_stage}" if plan.previous_stage else "")
                  + f") -> {layout.plan(name)}")
        splits = write_splits(exp, layout, info.case_ids, log)
        print(f"fingerprint: {layout.fingerprint}; splits: {layout.splits} "
              f"({len(splits)} folds over {n} cases)")
    return log.exit_code
