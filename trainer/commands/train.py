"""`python -m trainer train`: train one cross-validation fold, then validate it."""

from __future__ import annotations

import argparse
from pathlib import Path

from contracts.errors import ConfigError, DatasetError
from contracts.experiment import load_experiment
from contracts.jsonio import iter_jsonl, read_json
from contracts.layout import LATEST_CHECKPOINT, METRICS_FILE


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, help="experiment YAML file")
    p.add_argument("--configuration", required=True, help="e.g. 3d_fullres")
    p.add_argument("--fold", required=True, type=int, help="cross-validation fold, 0-4")
    p.add_argument("--resume", action="store_true",
                   help="continue from checkpoints/latest.pt (or start fresh when there is none)")
    p.add_argument("--force-resume", action="store_true",
                   help="resume even though the plan or hyperparameters changed")
    p.add_argument("--skip-validation", action="store_true",
                   help="stop after final.pt; a later --resume runs the fold's validation")
    p.add_argument("--batch-size", type=int, help="micro-batch size (out-of-memory refit)")
    p.add_argument("--grad-accumulation", type=int, help="micro-batches per optimizer step")


def _splits(layout, fold: int) -> dict:
    path = layout.splits
    if not path.exists():
        raise ConfigError(f"{path}: no splits yet; run `python -m trainer plan --experiment FILE`")
    try:
        splits = read_json(path)
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON ({e}); re-run `python -m trainer plan`") from None
    if not isinstance(splits, list) or not (0 <= fold < len(splits)):
        n = len(splits) if isinstance(splits, list) else 0
        raise ConfigError(f"{path}: fold {fold} does not exist (the file has {n} folds, 0-{n - 1})")
    entry = splits[fold]
    if not isinstance(entry, dict) or not {"train", "val"} <= set(entry):
        raise ConfigError(f"{path}: fold {fold} needs 'train' and 'val' case lists")
    return entry


def _check_preprocessed(folder: Path, cases: list[str], configuration: str) -> None:
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no preprocessed data for {configuration}; run "
                           f"`python -m trainer preprocess --experiment FILE --configuration "
                           f"{configuration}`")
    missing = [c for c in cases if not (folder / f"{c}_data.npy").exists()
               or not (folder / f"{c}.json").exists()]
    if missing:
        raise DatasetError([f"{folder}: case {c} is in splits.json but not preprocessed "
                            "(re-run preprocessing)" for c in missing[:20]],
                           header="preprocessed data incomplete")
    unlabeled = [c for c in cases if not (folder / f"{c}_seg.npy").exists()]
    if unlabeled:
        raise DatasetError([f"{folder}: training case {c} has no labels ({c}_seg.npy missing)"
                            for c in unlabeled[:20]], header="preprocessed labels missing")


def _reporter(exp, configuration: str, fold: int, val_cases: list[str], folder: Path):
    from trainer.reporting.fold_reporter import FoldReporter
    lay = exp.layout
    return FoldReporter(metrics=lay.fold_dir(configuration, fold) / "metrics.jsonl",
                        progress_png=lay.progress_png(configuration, fold),
                        previews_dir=lay.previews(configuration, fold),
                        title=f"{exp.experiment} {configuration} fold {fold}",
                        val_cases=list(val_cases), folder=folder, settings=exp.previews,
                        overlay=(lay, configuration, list(exp.folds)))


def _validation_previews(exp, configuration: str, fold: int, val_cases):
    if not exp.previews.enabled:
        return None
    from trainer.reporting.validation_previews import ValidationPreviews
    return ValidationPreviews(list(val_cases), exp.previews.cases,
                              exp.layout.previews(configuration, fold))


def _refuse_fresh_start_over(ckpt_dir: Path, latest: Path) -> None:
    """--resume without latest.pt starts fresh, unless that would overwrite other checkpoints."""
    others = [ckpt_dir / f"{k}.pt" for k in ("best", "final") if (ckpt_dir / f"{k}.pt").exists()]
    if others:
        names = " and ".join(p.name for p in others)
        raise ConfigError(f"{latest}: missing, but {names} exist in {ckpt_dir}; starting over "
                          f"would overwrite them. Copy {others[0].name} to latest.pt to continue "
                          "from it, or move the fold folder away to start over")


def run(args: argparse.Namespace) -> int:
    exp = load_experiment(args.experiment)
    if args.configuration not in exp.configurations:
        raise ConfigError(f"{args.experiment}: configuration {args.configuration!r} is not in "
                          f"configurations: ({', '.join(exp.configurations)})")
    if args.fold not in range(5):
        raise ConfigError(f"--fold {args.fold}: expected a fold from 0 to 4")
    for name in ("batch_size", "grad_accumulation"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {v}: expected a positive number")
    cfg = exp.configurations[args.configuration]
    layout = exp.layout
    fold_dir = layout.fold_dir(args.configuration, args.fold)
    ckpt_dir = layout.checkpoints(args.configuration, args.fold)
    latest = ckpt_dir / LATEST_CHECKPOINT

    # Heavy imports only once the arguments are known to be sane.
    import torch

    from trainer.runtime import device as devices
    from trainer.runtime.folders import remove_stale_temps
    from trainer.training.checkpoint import load_checkpoint
    from trainer.planning.plans import Plan
    from trainer.runtime.runlog import RunLog
    from trainer.runtime.signals import StopRequest
    from trainer.training.loop import FoldTrainer, hparams_hash

    dev = devices.pick_device()
    metrics = fold_dir / METRICS_FILE
    cfg_batch = cfg.batch_size
    if cfg_batch == "auto":          # nnU-Net's planned batch; a missing plan is reported below
        try:
            cfg_batch = int(read_json(layout.plan(args.configuration))["batch_size"])
        except (OSError, ValueError, KeyError, TypeError):
            cfg_batch = 2
    batch_size = args.batch_size or cfg_batch
    # --batch-size alone keeps the configuration's effective batch where it divides evenly.
    accum = args.grad_accumulation or (cfg.grad_accumulation if not args.batch_size else
                                       max(1, cfg_batch * cfg.grad_accumulation // batch_size))
    overrides = {k: v for k, v in (("batch_size", args.batch_size),
                                   ("grad_accumulation", args.grad_accumulation)) if v}
    # The fold folder's lock is taken before anything in it is read or written; the start
    # event waits until we know where training resumes.
    log = RunLog(fold_dir, role="train", defer_start=True, configuration=args.configuration,
                 fold=args.fold, device=devices.describe(dev), attempt=None, resumed_from=None,
                 resumed_iter=None, epochs=cfg.epochs, iterations_per_epoch=cfg.iterations_per_epoch,
                 batch_size=batch_size, grad_accumulation=accum,
                 effective_batch=batch_size * accum, overrides=overrides,
                 experiment=str(exp.source), hyperparameters=cfg.model_dump(mode="json"),
                 cpu_threads=torch.get_num_threads(),
                 num_workers=devices.data_workers(cfg.num_workers, dev))
    with log, StopRequest() as stop:
        events = list(iter_jsonl(metrics)) if metrics.exists() else []
        log.start_fields["attempt"] = 1 + sum(1 for e in events if e.get("event") == "start")
        existing = sorted(p.name for p in ckpt_dir.glob("*.pt")) if ckpt_dir.is_dir() else []
        if existing and not args.resume:
            raise ConfigError(f"{fold_dir}: this fold already has checkpoints "
                              f"({', '.join(existing)}); pass --resume to continue it, or move "
                              "the folder away to start over")
        remove_stale_temps(fold_dir)    # ours to clean: we hold the fold's lock
        ckpt = None
        if args.resume:
            if latest.exists():
                ckpt = load_checkpoint(latest, configuration=args.configuration, resume=True)
            else:
                _refuse_fresh_start_over(ckpt_dir, latest)
        log.begin(resumed_from=None if ckpt is None else ckpt["epoch"],
                  resumed_iter=None if ckpt is None else ckpt["iter"])
        if args.resume and ckpt is None:
            print(f"{latest}: no checkpoint yet; starting fold {args.fold} from scratch",
                  flush=True)
        plan = Plan.load(layout.plan(args.configuration))
        split = _splits(layout, args.fold)
        folder = layout.preprocessed(args.configuration)
        _check_preprocessed(folder, list(split["train"]) + list(split["val"]), args.configuration)
        if not split["train"] or not split["val"]:
            raise ConfigError(f"{layout.splits}: fold {args.fold} has an empty train or val list")
        previous = None
        if plan.previous_stage:      # the cascade: the lowres predictions of every case, first
            from trainer.inference.cascade import prepare_previous_stage
            previous = prepare_previous_stage(exp, plan, folder,
                                              list(split["train"]) + list(split["val"]), log)
        trainer = FoldTrainer(plan=plan, cfg=cfg, folder=folder, train_cases=split["train"],
                              val_cases=split["val"], fold_dir=fold_dir, log=log, device=dev,
                              batch_size=batch_size, grad_accumulation=accum, previous=previous)
        trainer.reporter = _reporter(exp, args.configuration, args.fold, split["val"], folder)
        if ckpt is not None:
            changed = []
            if ckpt.get("plan_digest") != plan.digest():
                changed.append(f"the plan ({layout.plan(args.configuration)})")
            if ckpt.get("hparams_hash") != hparams_hash(cfg):
                old = ckpt.get("hparams", {})
                new = cfg.model_dump(mode="json")
                keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                changed.append("hyperparameters (" + ", ".join(
                    f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys) + ")")
            if changed and not args.force_resume:
                raise ConfigError(f"{latest}: cannot resume, {' and '.join(changed)} changed since "
                                  "this checkpoint was written; restore them, pass "
                                  "--force-resume to continue anyway, or start the fold over")
            try:
                trainer.restore(ckpt)
            except (RuntimeError, KeyError, ValueError, TypeError) as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                raise ConfigError(f"{latest}: the checkpoint does not fit the network of the "
                                  f"current plan ({first}); resume with the plan it was trained "
                                  "with, or move the fold folder away to start over") from None
            trainer.replay_epochs({e.get("epoch") for e in events if e.get("event") == "epoch"})
            print(f"resuming fold {args.fold} at epoch {ckpt['epoch']} iteration {ckpt['iter']}",
                  flush=True)
        if not trainer.state.finished:
            try:
                done = trainer.train(stop)
            finally:
                trainer.reporter.close()     # the last progress.png is on disk before exit
            if not done:
                log.stopped(stop.cause)
                return 0
        if args.skip_validation:
            print("training complete; validation skipped (run again with --resume to validate)",
                  flush=True)
            return 0
        from trainer.inference.validation import validate_fold
        final = ckpt_dir / "final.pt"
        if final.exists():  # validate the final weights, as nnU-Net does
            trainer.net.load_state_dict(load_checkpoint(final, configuration=args.configuration)["model"])
        summary = validate_fold(trainer.net, plan, folder, list(split["val"]),
                                layout.validation(args.configuration, args.fold), log,
                                mirror=cfg.tta_mirroring, overlap=cfg.sliding_window_overlap,
                                device=dev, stop=stop, previous=previous,
                                previews=_validation_previews(exp, args.configuration, args.fold,
                                                              split["val"]))
        if summary is None:
            print("stopped during validation; --resume finishes the remaining cases", flush=True)
            log.stopped(stop.cause)
            return 0
        fg = summary.get("foreground_mean", {}).get("Dice") if isinstance(summary, dict) else None
        log.event("validation", foreground_dice=fg, cases=len(split["val"]))
    return log.exit_code
