"""nnU-Net v2's `training_log_*.txt`, read line by line into foldwatch's metric events.

nnU-Net's trainer prints, per epoch: `Epoch N`, `Current learning rate: x`, `train_loss x`,
`val_loss x`, `Pseudo dice [np.float32(a), ...]`, `Epoch time: x s` and, when the EMA of the
mean pseudo Dice improves, `Yayy! New best EMA pseudo Dice: x`. foldwatch's own entry point
(trainer.external.nnunet_fold) adds `foldwatch checkpoint <kind> epoch <n> <path>` after each
save, `foldwatch training batch_size <b> iterations_per_epoch <n>` once the trainer is
initialised (every later epoch carries them as `effective_batch` and `iterations_per_epoch`:
the trainer's own figures, a variant's included, from which samples/s is computed), and
`foldwatch warning <message>` when it carried on without something (nnU-Net's W&B logger),
which becomes a `warning` event. An epoch is announced when the next `Epoch` line,
`Training done.` or the end of the run shows that nothing more of it follows, so its
checkpoint events come first; at the end of a run (a crash, a stop, a kill found on resume)
only if its checkpoint was saved: an epoch whose save never came is redone by `--c`.
"""

from __future__ import annotations

import re

# nnU-Net's `f"{datetime.fromtimestamp(time())}:"`; str() of a datetime drops a zero fraction
STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?): ")
_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|-inf)"
_EPOCH = re.compile(r"^Epoch (\d+)\s*$")
_LR = re.compile(r"^Current learning rate: " + _NUM)
_TRAIN = re.compile(r"^train_loss " + _NUM)
_VAL = re.compile(r"^val_loss " + _NUM)
_DICE = re.compile(r"^Pseudo dice \[(.*)\]")
_TIME = re.compile(r"^Epoch time: " + _NUM + r" s")
_BEST = re.compile(r"^Yayy! New best EMA pseudo Dice: " + _NUM)
_CKPT = re.compile(r"^foldwatch checkpoint (latest|best|final) epoch (\d+) (.+?)\s*$")
_TRAINING = re.compile(r"^foldwatch training batch_size (\d+) iterations_per_epoch (\d+)\s*$")
_WARNING = re.compile(r"^foldwatch warning (.+?)\s*$")
_SPLIT = re.compile(r"^This split has (\d+) training and (\d+) validation cases")
_PREDICT = re.compile(r"^predicting (\S+)")
_MEAN_VAL = re.compile(r"^Mean Validation Dice:\s+" + _NUM)
_NP_WRAP = re.compile(r"np\.float\d+\(([^)]*)\)")


def _f(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if v == v and v not in (float("inf"), float("-inf")) else None


def parse_dice_list(text: str) -> list[float | None]:
    """`np.float32(0.95), np.float32(0.8)` or `0.95, 0.8` -> [0.95, 0.8]."""
    text = _NP_WRAP.sub(r"\1", text)
    return [_f(part.strip()) for part in text.split(",") if part.strip()]


class NnunetLogParser:
    """Feed lines with `feed(line)`; each call returns the events they complete, in order."""

    def __init__(self, ema: float | None = None) -> None:
        self.ema = ema              # nnU-Net's EMA: 0.9 * previous + 0.1 * mean pseudo Dice
        self.epoch: dict | None = None
        self.validation_total: int | None = None
        self.validation_done = 0
        self.mean_validation_dice: float | None = None
        self.training_done = False
        self.training: dict[str, int] = {}   # effective_batch, iterations_per_epoch
        self.saved = False          # the epoch in progress has its resumable checkpoint

    def feed(self, raw: str) -> list[tuple[str, dict]]:
        line = STAMP.sub("", raw.rstrip("\n")).strip()
        out: list[tuple[str, dict]] = []
        if m := _EPOCH.match(line):
            out += self.flush()
            self.epoch = {"epoch": int(m.group(1)), "train_loss": None, "val_loss": None,
                          "val_dice": None, "val_dice_per_class": None, "ema_dice": None,
                          "lr": None, "epoch_s": None, "data_wait_frac": None,
                          "peak_mem_mb": None, "new_best": False}
            self.saved = False
        elif m := _CKPT.match(line):
            out.append(("checkpoint", {"kind": m.group(1), "epoch": int(m.group(2)),
                                       "path": m.group(3)}))
            # latest (every epoch but the last) or final (the last) after this epoch's end
            if (self.epoch is not None and m.group(1) in ("latest", "final")
                    and int(m.group(2)) == self.epoch["epoch"] + 1):
                self.saved = True
        elif m := _TRAINING.match(line):
            self.training = {"effective_batch": int(m.group(1)),
                             "iterations_per_epoch": int(m.group(2))}
        elif m := _WARNING.match(line):
            out.append(("warning", {"message": m.group(1)}))
        elif line.startswith("Training done."):
            out += self.flush()
            self.training_done = True
        elif m := _SPLIT.match(line):
            self.validation_total = int(m.group(2))
        elif (m := _PREDICT.match(line)) and self.training_done:
            out.append(("progress", {"stage": "validation", "done": self.validation_done,
                                     "total": self.validation_total or 0, "case": m.group(1)}))
            self.validation_done += 1
        elif m := _MEAN_VAL.match(line):
            self.mean_validation_dice = _f(m.group(1))
            out.append(("progress", {"stage": "validation", "done": self.validation_done,
                                     "total": self.validation_total or self.validation_done,
                                     "mean_dice": self.mean_validation_dice}))
        elif self.epoch is not None:
            self._epoch_line(line)
        return out

    def _epoch_line(self, line: str) -> None:
        e = self.epoch
        if m := _LR.match(line):
            e["lr"] = _f(m.group(1))
        elif m := _TRAIN.match(line):
            e["train_loss"] = _f(m.group(1))
        elif m := _VAL.match(line):
            e["val_loss"] = _f(m.group(1))
        elif m := _DICE.match(line):
            per_class = parse_dice_list(m.group(1))
            e["val_dice_per_class"] = per_class
            vals = [v for v in per_class if v is not None]
            e["val_dice"] = sum(vals) / len(vals) if vals else None
        elif m := _TIME.match(line):
            e["epoch_s"] = _f(m.group(1))
        elif m := _BEST.match(line):
            e["ema_dice"] = _f(m.group(1))
            e["new_best"] = True

    def flush(self, ended: bool = False) -> list[tuple[str, dict]]:
        """The epoch in progress as an event, if it got as far as its losses; `ended` (the
        process is gone, nothing more of the log follows): only if its checkpoint was saved."""
        e, self.epoch = self.epoch, None
        if e is None or e["train_loss"] is None and e["epoch_s"] is None:
            return []          # interrupted before its end: it will be redone
        if ended and not self.saved:
            return []          # its losses were logged, its save never came: redone by --c
        if e["ema_dice"] is None and e["val_dice"] is not None:
            e["ema_dice"] = (e["val_dice"] if self.ema is None
                             else 0.9 * self.ema + 0.1 * e["val_dice"])
        if e["ema_dice"] is not None:
            self.ema = e["ema_dice"]
        return [("epoch", {**e, **self.training})]
