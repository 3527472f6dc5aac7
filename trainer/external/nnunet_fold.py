"""One nnU-Net v2 fold, as `nnUNetv2_train` runs it, with foldwatch's checkpoint policy.

`python -m trainer.external.nnunet_fold DATASET CFG FOLD [-p PLANS] [-tr TRAINER] [--npz]
[--c] [-device cpu|cuda] [--epochs N] [--iterations N] [--val-iterations N] [--disable-tta]`

Nothing in the user's nnU-Net installation is edited: the user's trainer class is resolved,
and a subclass made at runtime
- saves `checkpoint_latest.pth` after every epoch (nnU-Net's `save_every` is 50, so `--c`
  after a crash would lose up to 49 epochs; here at most the epoch in progress),
- on SIGTERM/SIGUSR2 finishes the current iteration, saves `checkpoint_latest.pth` with the
  weights trained so far (the epoch in progress is redone on resume) and exits 0,
- writes every checkpoint atomically and announces it in the training log with a line the
  foldwatch runner reads (`foldwatch checkpoint <kind> epoch <n> <path>`),
- can shorten num_epochs / iterations for tests and smoke runs,
- can validate without test-time mirroring (`--disable-tta`, as nnUNetv2_predict's flag).
- logs the batch size and iterations per epoch it trains with (`foldwatch training batch_size
  <b> iterations_per_epoch <n>`): a trainer variant may change either, and the runner's
  samples/s needs them.

nnU-Net's own W&B logger (nnUNet_wandb_enabled) is started after the trainer is built, by
`nnunet_wandb.start_wandb`: a resume repairs what a failed attempt left, and a W&B failure
costs the attempt its W&B run, not its training.

nnU-Net's own lookup (`recursive_find_trainer_class_by_name`) imports every variant module;
with a CPU build of torch one of them fails on "operator torchvision::nms does not exist".
The stock `nnUNetTrainer` is imported directly, and variants are searched only when named.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from pathlib import Path

from contracts import exitcodes
from trainer.external.nnunet_wandb import (ENABLED, WARNING_MARKER, own_service, start_wandb,
                                           wandb_wanted)

MARKER = "foldwatch checkpoint"      # console.runner.nnunet_log parses these lines
TRAINING_MARKER = "foldwatch training"
STOPPED_MARKER = "foldwatch stopped"


class GracefulStop(Exception):
    """Raised inside the training loop after the stop checkpoint is saved."""


def resolve_trainer_class(name: str):
    """The user's trainer class: stock, a dotted `module.Class`, or a variant found by name."""
    if name == "nnUNetTrainer":
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        return nnUNetTrainer
    if "." in name:
        module, _, cls = name.rpartition(".")
        try:
            return getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError) as e:
            raise SystemExit(_usage(f"trainer class {name!r} could not be imported: {e}"))
    try:
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
        found = recursive_find_trainer_class_by_name(name)
    except Exception as e:      # nnU-Net's lookup imports every variant module; one may fail
        raise SystemExit(_usage(
            f"nnU-Net's lookup of trainer {name!r} failed while importing its variant modules "
            f"({type(e).__name__}: {e}). Name the class by its module instead, e.g. "
            f"nnunet.trainer: nnunetv2.training.nnUNetTrainer.variants.<module>.{name}"))
    if found is None:
        raise SystemExit(_usage(f"nnU-Net has no trainer class named {name!r} "
                                "(check nnunet.trainer in the experiment file)"))
    return found


def _usage(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return exitcodes.USAGE


def supervised_subclass(base, *, epochs: int | None, iterations: int | None,
                        val_iterations: int | None, every_epoch: bool = True):
    """A subclass of the user's trainer with foldwatch's checkpoint and stop policy."""
    class Supervised(base):
        _stop_signal: int | None = None

        # No __init__ here: nnU-Net records its constructor's arguments by inspecting the
        # signature, so a subclass must not change it; see `apply_policy`.
        def apply_policy(self) -> None:
            if epochs:
                self.num_epochs = epochs
            if iterations:
                self.num_iterations_per_epoch = iterations
            if val_iterations:
                self.num_val_iterations_per_epoch = val_iterations
            if every_epoch:
                self.save_every = 1      # checkpoint_latest.pth after every epoch

        def save_checkpoint(self, filename: str) -> None:
            # nnU-Net's torch.save in place can leave a torn file on a kill: write a temp
            # file beside it and rename it over the old one.
            path = Path(filename)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            super().save_checkpoint(str(tmp))
            if tmp.exists():
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                kind = path.stem.replace("checkpoint_", "")
                self.print_to_log_file(f"{MARKER} {kind} epoch {self.current_epoch + 1} {path}",
                                       also_print_to_console=False)

        def on_train_start(self):
            super().on_train_start()     # initialize(): the batch size is set from here on
            self.print_to_log_file(f"{TRAINING_MARKER} batch_size {self.batch_size} "
                                   f"iterations_per_epoch {self.num_iterations_per_epoch}",
                                   also_print_to_console=False)

        def train_step(self, batch: dict) -> dict:
            out = super().train_step(batch)
            if self._stop_signal is not None:
                self._save_on_stop()
            return out

        def on_epoch_end(self):
            super().on_epoch_end()
            if self._stop_signal is not None and self.current_epoch < self.num_epochs:
                raise GracefulStop()   # latest was saved by this epoch's end

        def _save_on_stop(self) -> None:
            # save_checkpoint stores current_epoch + 1 (it runs at an epoch's end); mid-epoch
            # the epoch in progress must be redone, with the weights trained so far.
            self.current_epoch -= 1
            try:
                self.save_checkpoint(str(Path(self.output_folder) / "checkpoint_latest.pth"))
            finally:
                self.current_epoch += 1
            raise GracefulStop()

    Supervised.__name__ = Supervised.__qualname__ = base.__name__
    return Supervised


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m trainer.external.nnunet_fold",
                                description="nnUNetv2_train with foldwatch's checkpoint policy")
    p.add_argument("dataset_name_or_id")
    p.add_argument("configuration")
    p.add_argument("fold")
    p.add_argument("-tr", default="nnUNetTrainer")
    p.add_argument("-p", default="nnUNetPlans")
    p.add_argument("--npz", action="store_true")
    p.add_argument("--c", action="store_true")
    p.add_argument("-device", default="cuda", choices=("cuda", "cpu", "mps"))
    p.add_argument("--epochs", type=int)
    p.add_argument("--iterations", type=int)
    p.add_argument("--val-iterations", type=int)
    p.add_argument("--disable-tta", action="store_true",
                   help="final validation without test-time mirroring (training unchanged)")
    p.add_argument("--nnunet-checkpointing", action="store_true",
                   help="keep nnU-Net's own policy (latest every 50 epochs, a signal kills): "
                        "the baseline of bench/nnunet_workflow.py")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    own_service()
    stop: dict[str, int] = {}
    holder: list = []

    def on_signal(signum, frame):
        stop["signal"] = signum
        for t in holder:
            t._stop_signal = signum

    # Installed before nnU-Net forks its augmentation workers, which inherit it: a SIGTERM to
    # the whole process group then leaves them alive until the main process has saved.
    if not args.nnunet_checkpointing:
        for s in (signal.SIGTERM, signal.SIGUSR2):
            signal.signal(s, on_signal)

    import torch
    from batchgenerators.utilities.file_and_folder_operations import join, load_json
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.run.run_training import maybe_load_checkpoint
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    if nnUNet_preprocessed is None:
        return _usage("nnUNet_preprocessed is not set (nnunet.preprocessed in the experiment)")
    try:
        dataset = maybe_convert_to_dataset_name(
            int(args.dataset_name_or_id) if args.dataset_name_or_id.isdigit()
            else args.dataset_name_or_id)
    except RuntimeError as e:
        return _usage(f"unknown nnU-Net dataset {args.dataset_name_or_id!r}: {e}")
    folder = Path(nnUNet_preprocessed) / dataset
    plans_file = folder / f"{args.p}.json"
    if not plans_file.is_file():
        found = sorted(p.stem for p in folder.glob("*.json")
                       if p.stem not in ("dataset", "dataset_fingerprint", "splits_final"))
        return _usage(f"plans {args.p!r} not found: {plans_file} does not exist "
                      f"(plans there: {', '.join(found) or 'none'}; run the plan stage or fix "
                      "nnunet.plans)")
    plans = load_json(str(plans_file))
    if args.configuration not in plans.get("configurations", {}):
        return _usage(f"configuration {args.configuration!r} is not in {plans_file} "
                      f"(it has {', '.join(plans.get('configurations', {}))})")
    plans["continue_training"] = args.c
    base = resolve_trainer_class(args.tr)
    cls = supervised_subclass(base, epochs=args.epochs, iterations=args.iterations,
                              val_iterations=args.val_iterations,
                              every_epoch=not args.nnunet_checkpointing)
    if args.device == "cpu":
        torch.set_num_threads(int(os.environ.get("FOLDWATCH_CPU_THREADS") or os.cpu_count() or 1))
    else:
        torch.set_num_threads(1)
    fold = args.fold if args.fold == "all" else int(args.fold)
    dataset_json = load_json(join(str(folder), "dataset.json"))
    with_wandb = wandb_wanted()
    if with_wandb:
        os.environ[ENABLED] = "0"      # not in the constructor, where a W&B error ends the fold
    trainer = cls(plans=plans, configuration=args.configuration, fold=fold,
                  dataset_json=dataset_json, device=torch.device(args.device))
    trainer.apply_policy()             # before initialize(): the LR schedule reads num_epochs
    if with_wandb:
        os.environ[ENABLED] = "1"

        def warn(message: str) -> None:
            print(f"warning: {message}", file=sys.stderr, flush=True)
            trainer.print_to_log_file(f"{WARNING_MARKER} {message}", also_print_to_console=False)

        # what nnU-Net's constructor logs first (plans without continue_training, popped)
        start_wandb(trainer, args.c, {"plans": plans, "configuration": args.configuration,
                                      "fold": fold, "dataset": dataset_json}, warn)
    holder.append(trainer)
    if "signal" in stop:
        trainer._stop_signal = stop["signal"]
    maybe_load_checkpoint(trainer, args.c, False, None)
    try:
        trainer.run_training()
    except GracefulStop:
        trainer.print_to_log_file(f"{STOPPED_MARKER} at epoch {trainer.current_epoch} on signal "
                                  f"{stop.get('signal')}", also_print_to_console=True)
        _finish_loaders(trainer)
        return exitcodes.OK
    if args.disable_tta:
        # read by the validation's predictor only; the checkpoints keep the trained axes
        trainer.inference_allowed_mirroring_axes = None
    trainer.perform_actual_validation(args.npz)
    return exitcodes.OK


def _finish_loaders(trainer) -> None:
    for loader in (trainer.dataloader_train, trainer.dataloader_val):
        finish = getattr(loader, "_finish", None)
        if finish is not None:
            try:
                finish()
            except Exception:
                pass


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
