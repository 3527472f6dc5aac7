"""What the console keeps of one run's metric log: latest values and a bounded epoch history."""

from __future__ import annotations

from console.protocol.model import EpochPoint

MAX_POINTS = 240   # chart points kept per run; older epochs are thinned, never unbounded


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


class RunMetrics:
    """Fed every event of a run's metrics.jsonl in order; memory stays bounded."""

    def __init__(self) -> None:
        self.starts = 0
        self.end: dict | None = None          # `end` of the latest attempt, None while running
        self.last_t: float | None = None
        self.epoch: int | None = None         # epochs done
        self.epochs: int | None = None
        self.iteration: int | None = None
        self.iterations_per_epoch: int | None = None
        self.samples_per_s: float | None = None   # over the last whole epoch (see _epoch)
        self.effective_batch: int | None = None
        self.epoch_time_s: float | None = None    # the last epoch's wall time
        self.data_wait_frac: float | None = None
        self.peak_mem_mb: float | None = None
        self.val_dice_per_class: list[float | None] | None = None
        self.train_loss: float | None = None
        self.val_dice: float | None = None
        self.ema_dice: float | None = None
        self.best_dice: float | None = None
        self.lr: float | None = None
        self.epoch_s: float | None = None     # smoothed seconds per epoch
        self.progress: tuple[int, int] | None = None
        self.checkpoints: dict[str, str] = {}
        self.latest_checkpoint_epoch: int | None = None   # of the newest `latest` checkpoint
        self.history: list[EpochPoint] = []
        self._stride = 1
        self._seen_epochs = 0

    def feed(self, ev: dict) -> None:
        t = _num(ev.get("t"))
        if t is not None:
            self.last_t = t
        name = ev.get("event")
        if name == "start":
            self.starts += 1
            self.end = None
            self.progress = None
            if isinstance(ev.get("epochs"), int):
                self.epochs = ev["epochs"]
            if isinstance(ev.get("iterations_per_epoch"), int):
                self.iterations_per_epoch = ev["iterations_per_epoch"]
            if isinstance(ev.get("effective_batch"), int):
                self.effective_batch = ev["effective_batch"]
            if isinstance(ev.get("resumed_from"), int):
                self.epoch = ev["resumed_from"]
        elif name == "iter":
            if isinstance(ev.get("iter"), int):
                self.iteration = ev["iter"]
            # Neither the iteration's loss nor its samples/s (which includes one data-loader
            # wait) is shown: "train loss" and "samples/s" are per whole epoch (docs/console.md).
            self.lr = _num(ev.get("lr"))
        elif name == "epoch":
            self._epoch(ev)
        elif name == "checkpoint":
            if isinstance(ev.get("kind"), str):
                self.checkpoints[ev["kind"]] = str(ev.get("path"))
            if ev.get("kind") == "latest" and isinstance(ev.get("epoch"), int):
                self.latest_checkpoint_epoch = ev["epoch"]
        elif name == "progress":
            done, total = ev.get("done"), ev.get("total")
            if isinstance(done, int) and isinstance(total, int):
                self.progress = (done, total)
        elif name == "end":
            self.end = ev

    def _epoch(self, ev: dict) -> None:
        e = ev.get("epoch")
        if isinstance(e, int):
            self.epoch = e + 1
        self.iteration = None
        self.train_loss = _num(ev.get("train_loss"))
        self.val_dice = _num(ev.get("val_dice"))
        self.ema_dice = _num(ev.get("ema_dice"))
        self.lr = _num(ev.get("lr"))
        if self.ema_dice is not None and (self.best_dice is None or self.ema_dice > self.best_dice):
            self.best_dice = self.ema_dice
        # the trainer's own figures where its epochs carry them (nnU-Net: a variant may change
        # the batch or the iterations the start event was told)
        if isinstance(ev.get("effective_batch"), int) and ev["effective_batch"] > 0:
            self.effective_batch = ev["effective_batch"]
        if isinstance(ev.get("iterations_per_epoch"), int) and ev["iterations_per_epoch"] > 0:
            self.iterations_per_epoch = ev["iterations_per_epoch"]
        es = _num(ev.get("epoch_s"))
        self.epoch_time_s = es
        if es is not None:
            self.epoch_s = es if self.epoch_s is None else 0.7 * self.epoch_s + 0.3 * es
        if es and self.effective_batch and self.iterations_per_epoch:
            self.samples_per_s = self.effective_batch * self.iterations_per_epoch / es
        self.data_wait_frac = _num(ev.get("data_wait_frac"))
        self.peak_mem_mb = _num(ev.get("peak_mem_mb"))
        pc = ev.get("val_dice_per_class")
        self.val_dice_per_class = [_num(d) for d in pc] if isinstance(pc, list) else None
        self._seen_epochs += 1
        if (self._seen_epochs - 1) % self._stride == 0:
            self.history.append(EpochPoint(epoch=e if isinstance(e, int) else self._seen_epochs - 1,
                                           train_loss=self.train_loss,
                                           val_loss=_num(ev.get("val_loss")),
                                           val_dice=self.val_dice, ema_dice=self.ema_dice,
                                           lr=self.lr, val_dice_per_class=self.val_dice_per_class,
                                           epoch_s=es, data_wait_frac=self.data_wait_frac,
                                           peak_mem_mb=self.peak_mem_mb,
                                           samples_per_s=self.samples_per_s))
            if len(self.history) > MAX_POINTS:
                self.history = self.history[::2]
                self._stride *= 2

    def eta_s(self) -> float | None:
        if self.epoch_s is None or self.epochs is None or self.epoch is None:
            return None
        left = self.epochs - self.epoch
        if self.iteration is not None and self.iterations_per_epoch:
            left -= min(1.0, self.iteration / self.iterations_per_epoch)
        return max(0.0, left * self.epoch_s)
