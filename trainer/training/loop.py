"""One fold's training loop: epochs of random batches, pseudo-Dice, EMA, checkpoints, stop."""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from contracts.experiment import Configuration
from contracts.layout import CHECKPOINTS_DIR

from trainer.training.checkpoint import save_checkpoint
from trainer.training.loader import VALIDATION_STREAM, PatchBatches, epoch_loader
from trainer.training.loss import DeepSupervisionLoss, make_loss
from trainer.training.network import build_network, deep_supervision_weights, split_outputs
from trainer.planning.plans import Plan
from trainer.runtime.device import data_workers
from trainer.runtime.faults import fault_point
from trainer.runtime.runlog import RunLog
from trainer.runtime.signals import StopRequest

# Settings that do not change the trained weights (batches do not depend on the worker
# count; the other two only affect the final validation): left out of the hash, so they
# may change on resume. The --batch-size/--grad-accumulation overrides are never hashed.
NOT_HASHED = ("num_workers", "tta_mirroring", "sliding_window_overlap")

ITER_LOG_INTERVAL_S = float(os.environ.get("FOLDWATCH_ITER_LOG_S", "5"))


def hparams_of(cfg: Configuration) -> dict:
    return cfg.model_dump(mode="json")


def hparams_hash(cfg: Configuration) -> str:
    data = {k: v for k, v in hparams_of(cfg).items() if k not in NOT_HASHED}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def poly_lr(base: float, epoch: int, epochs: int) -> float:
    return base * (1 - epoch / epochs) ** 0.9


@dataclass
class Progress:
    """Where training is and what it has seen; saved in every checkpoint."""

    epoch: int = 0                 # the epoch being trained (== epochs once training is done)
    iter: int = 0                  # next iteration inside `epoch`
    ema_dice: float | None = None
    best_ema: float | None = None
    history: list[dict] = field(default_factory=list)
    partial: dict = field(default_factory=dict)   # running sums of the unfinished epoch
    finished: bool = False


class FoldTrainer:
    def __init__(self, *, plan: Plan, cfg: Configuration, folder: Path, train_cases: list[str],
                 val_cases: list[str], fold_dir: Path, log: RunLog, device: torch.device,
                 batch_size: int, grad_accumulation: int, previous: Path | None = None) -> None:
        self.plan, self.cfg, self.log, self.device = plan, cfg, log, device
        self.fold_dir = fold_dir
        self.ckpt_dir = fold_dir / CHECKPOINTS_DIR
        self.micro_batch, self.accum = batch_size, grad_accumulation
        self.batch = batch_size * grad_accumulation
        torch.manual_seed(cfg.seed)
        self.net = build_network(plan, deep_supervision=cfg.deep_supervision,
                                 grad_checkpointing=cfg.grad_checkpointing).to(device)
        n_out = 1 + (self.net.deep_supr_num if self.net.deep_supervision else 0)
        self.regions = list(plan.regions.values()) or None
        self.loss = DeepSupervisionLoss(deep_supervision_weights(n_out), self.regions)
        self.plain_loss = make_loss(self.regions)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=cfg.learning_rate,
                                   momentum=cfg.momentum, nesterov=True,
                                   weight_decay=cfg.weight_decay)
        self.amp = cfg.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        labels = plan.foreground_labels
        # cascade: `previous` holds the previous stage's label maps, appended one-hot
        self.train_data = PatchBatches(folder, train_cases, plan.patch_size, labels, self.batch,
                                       cfg.oversample_foreground, cfg.seed, previous=previous)
        self.val_data = PatchBatches(folder, val_cases, plan.patch_size, labels, self.batch,
                                     cfg.oversample_foreground, cfg.seed + VALIDATION_STREAM,
                                     augment_data=False, previous=previous)
        self.workers = data_workers(cfg.num_workers, device)
        self.state = Progress()
        self.reporter = None   # trainer.reporting.FoldReporter: pictures after each epoch

    # -- checkpoints -----------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        s = self.state
        return {
            "format": 1,
            "model": self.net.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": s.epoch, "iter": s.iter, "finished": s.finished,
            "ema_dice": s.ema_dice, "best_ema": s.best_ema,
            "history": s.history, "partial": s.partial,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "plan_digest": self.plan.digest(),
            "hparams_hash": hparams_hash(self.cfg),
            "hparams": hparams_of(self.cfg),
            "configuration": self.plan.configuration,
        }

    def save(self, kind: str) -> None:
        path = self.ckpt_dir / f"{kind}.pt"
        save_checkpoint(path, self.checkpoint_state())
        self.log.event("checkpoint", kind=kind, epoch=self.state.epoch, iter=self.state.iter,
                       path=str(path))

    def restore(self, ckpt: dict) -> None:
        self.net.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["torch_rng"])
        if ckpt.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        self.state = Progress(epoch=ckpt["epoch"], iter=ckpt["iter"], ema_dice=ckpt["ema_dice"],
                              best_ema=ckpt["best_ema"], history=list(ckpt["history"]),
                              partial=dict(ckpt["partial"]), finished=bool(ckpt["finished"]))

    def replay_epochs(self, logged: set[int]) -> None:
        """Announce checkpointed epochs whose `epoch` event a kill kept out of the log."""
        for record in self.state.history:
            if record.get("epoch") not in logged:
                self.log.event("epoch", **record, replayed=True)

    # -- one iteration ------------------------------------------------------------------
    def step(self, batch: dict) -> float:
        self.net.train()
        self.opt.zero_grad(set_to_none=True)
        images = batch["image"].to(self.device, non_blocking=True)
        labels = batch["label"].to(self.device, non_blocking=True)
        total = 0.0
        for i in range(self.accum):
            sl = slice(i * self.micro_batch, (i + 1) * self.micro_batch)
            with torch.autocast("cuda", enabled=self.amp):
                out = self.net(images[sl])
            outs = split_outputs(out) if self.net.deep_supervision else [out]
            loss = self.loss(outs, labels[sl]) / self.accum
            self.scaler.scale(loss).backward()
            total += float(loss.detach())
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        return total

    # -- pseudo-Dice on validation patches ------------------------------------------------
    @torch.no_grad()
    def pseudo_dice(self, epoch: int) -> tuple[float, list[float | None], float]:
        self.net.eval()
        self.val_data.epoch = epoch
        k = self.plan.num_classes
        n = k if self.regions else k - 1          # regions: every output; labels: no background
        tp, fp, fn = np.zeros(n), np.zeros(n), np.zeros(n)
        losses = []
        for it in range(self.cfg.val_iterations):
            batch = self.val_data[it]
            images = batch["image"].to(self.device)
            labels = batch["label"].to(self.device)
            for i in range(self.accum):
                sl = slice(i * self.micro_batch, (i + 1) * self.micro_batch)
                with torch.autocast("cuda", enabled=self.amp):
                    logits = self.net(images[sl])
                losses.append(float(self.plain_loss(logits, labels[sl])))
                for i, (p, r) in enumerate(self._masks(logits, labels[sl])):
                    tp[i] += int((p & r).sum())
                    fp[i] += int((p & ~r).sum())
                    fn[i] += int((~p & r).sum())
        denom = 2 * tp + fp + fn
        per_class = [float(2 * t / d) if d > 0 else None for t, d in zip(tp, denom)]
        valid = [d for d in per_class if d is not None]
        mean = float(np.mean(valid)) if valid else math.nan
        return mean, per_class, float(np.mean(losses)) if losses else math.nan

    def _masks(self, logits: torch.Tensor, ref: torch.Tensor):
        """(predicted, reference) boolean masks per scored class or region."""
        if self.regions:
            from trainer.training.loss import region_targets
            target = region_targets(ref, self.regions) > 0.5
            pred = logits > 0                              # sigmoid > 0.5
            return [(pred[:, i], target[:, i]) for i in range(len(self.regions))]
        pred = logits.argmax(1)
        return [(pred == c, ref == c) for c in range(1, self.plan.num_classes)]

    # -- the loop -----------------------------------------------------------------------
    def train(self, stop: StopRequest) -> bool:
        """Train until the last epoch (True) or until a stop request (False, latest.pt saved)."""
        cfg, s = self.cfg, self.state
        ipe = cfg.iterations_per_epoch
        while s.epoch < cfg.epochs:
            epoch = s.epoch
            lr = poly_lr(cfg.learning_rate, epoch, cfg.epochs)
            for g in self.opt.param_groups:
                g["lr"] = lr
            p = s.partial or {"loss_sum": 0.0, "n": 0, "wait_s": 0.0, "busy_s": 0.0,
                              "elapsed_s": 0.0}
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            t_epoch = time.monotonic() - p["elapsed_s"]
            last_log = 0.0
            loader = epoch_loader(self.train_data, epoch, s.iter, ipe, self.workers)
            batches = iter(loader)
            try:
                while s.iter < ipe:
                    t0 = time.monotonic()
                    batch = next(batches)
                    t1 = time.monotonic()
                    loss = self.step(batch)
                    t2 = time.monotonic()
                    p["loss_sum"] += loss
                    p["n"] += 1
                    p["wait_s"] += t1 - t0
                    p["busy_s"] += t2 - t0
                    s.iter += 1
                    if t2 - last_log >= ITER_LOG_INTERVAL_S or s.iter == 1:
                        last_log = t2
                        self.log.event("iter", epoch=epoch, iter=s.iter, loss=loss, lr=lr,
                                       samples_per_s=self.batch / max(t2 - t0, 1e-9),
                                       data_wait_frac=(t1 - t0) / max(t2 - t0, 1e-9))
                    if stop.requested and s.iter < ipe:
                        p["elapsed_s"] = time.monotonic() - t_epoch
                        s.partial = p
                        self.save("latest")
                        return False
            finally:
                del batches  # shuts the worker processes down
            dice, per_class, val_loss = self.pseudo_dice(epoch)
            if not math.isnan(dice):
                s.ema_dice = dice if s.ema_dice is None else 0.9 * s.ema_dice + 0.1 * dice
            record = {
                "epoch": epoch, "train_loss": p["loss_sum"] / max(p["n"], 1),
                "val_loss": val_loss, "val_dice": dice, "val_dice_per_class": per_class,
                "ema_dice": s.ema_dice, "lr": lr, "epoch_s": time.monotonic() - t_epoch,
                "data_wait_frac": p["wait_s"] / max(p["busy_s"], 1e-9),
                "peak_mem_mb": self.peak_mem_mb(),
            }
            s.history.append(record)
            s.epoch, s.iter, s.partial = epoch + 1, 0, {}
            improved = s.ema_dice is not None and (s.best_ema is None or s.ema_dice > s.best_ema)
            if improved:
                s.best_ema = s.ema_dice
            print(epoch_line(record, cfg.epochs, s.best_ema if improved else None), flush=True)
            s.finished = s.epoch >= cfg.epochs
            if improved:
                self.save("best")
            if s.finished:
                self.save("final")
            # Checkpoint, then announce: an `epoch` event means "resumable from here".
            self.save("latest")
            fault_point("after-checkpoint")
            self.log.event("epoch", **record)
            if self.reporter is not None:     # pictures: after the epoch is announced
                self.reporter.after_epoch(self, epoch)
            if stop.requested and not s.finished:
                return False
        return True

    def peak_mem_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        try:
            import resource
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        except ImportError:
            return float("nan")


def epoch_line(r: dict, epochs: int, new_best: float | None) -> str:
    """One human line per epoch on stdout, like nnU-Net's; metrics.jsonl stays the contract."""
    def f(v, fmt="{:.4f}"):
        return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)
    dice = ", ".join(f(d) for d in r["val_dice_per_class"])
    line = (f"epoch {r['epoch'] + 1}/{epochs}  train_loss {f(r['train_loss'])}  "
            f"val_loss {f(r['val_loss'])}  pseudo-Dice [{dice}]  "
            f"epoch_time {r['epoch_s']:.1f}s  lr {r['lr']:.5f}")
    return line + (f"  new best EMA pseudo-Dice {new_best:.4f}" if new_best is not None else "")
