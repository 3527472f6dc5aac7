"""`python -m trainer preprocess --experiment FILE --configuration C`: fill the cache once."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, type=Path, help="experiment YAML file")
    parser.add_argument("--configuration", required=True, help="e.g. 3d_fullres")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: up to 4)")


def run(args: argparse.Namespace) -> int:
    from contracts.errors import ConfigError
    from contracts.experiment import load_experiment
    from contracts.layout import preprocess_stage
    from trainer.data.datasets import load_dataset, require_consistent
    from trainer.planning.plans import Plan
    from trainer.planning.preprocessing import preprocess_case, preprocessing_digest
    from trainer.runtime.planlock import plans_lock
    from trainer.runtime.runlog import RunLog
    from trainer.runtime.folders import make_folder, remove_stale_temps
    from trainer.runtime.workers import default_workers, run_all

    exp = load_experiment(args.experiment)
    c = args.configuration
    if c not in exp.configurations:
        raise ConfigError(f"{args.experiment}: no configuration {c!r} (has: "
                          f"{', '.join(exp.configurations)})")
    layout = exp.layout
    out_dir = layout.preprocessed(c)
    stage = preprocess_stage(c)
    workers = args.workers or default_workers()
    with RunLog(layout.stage_dir(stage), stage=stage, configuration=c) as log, \
            plans_lock(layout.plans_dir, exclusive=False, log=log):
        plan = Plan.load(layout.plan(c))
        info = require_consistent(load_dataset(exp.dataset_path))
        # The stage's run lock (taken by RunLog) is what serialises two preprocesses of one
        # configuration: the second exits 73 (busy) instead of writing the same cache.
        make_folder(out_dir)
        remove_stale_temps(out_dir)     # left by a killed preprocess of this configuration
        digest = preprocessing_digest(plan)
        items = [(case, plan.to_dict(), str(out_dir), digest) for case in info.cases]
        total = len(items)
        t0 = time.monotonic()
        log.progress(stage, 0, total)
        skipped = 0

        def on_done(done, item, result):
            nonlocal skipped
            skipped += bool(result["skipped"])
            log.progress(stage, done, total, case=result["case"], skipped=result["skipped"])

        run_all(preprocess_case, items, workers, on_done)
        secs = time.monotonic() - t0
        log.event("summary", cases=total, skipped=skipped, seconds=round(secs, 3))
        print(f"{c}: {total - skipped} case(s) preprocessed, {skipped} already up to date, "
              f"{secs:.1f}s -> {out_dir}")
    return log.exit_code
