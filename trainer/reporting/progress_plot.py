"""progress.png per fold and one overlay figure per configuration, from metrics.jsonl alone.

Only the `epoch` events are used, so any trainer kind that writes the metric log gets the
same figures. Drawn with matplotlib's object API on the Agg canvas (no pyplot state), which
is safe in a background thread.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from contracts.jsonio import atomic_write_file


def epoch_records(metrics: Path) -> list[dict]:
    """The `epoch` events in epoch order; an epoch logged twice (redone after a kill) keeps
    its last record, so a restarted run still draws one continuous curve."""
    return EpochHistory(metrics).update()


class EpochHistory:
    """epoch_records, read incrementally: a long log is parsed once, not after every epoch."""

    def __init__(self, metrics: Path) -> None:
        self.path = Path(metrics)
        self.offset = 0
        self.by_epoch: dict[int, dict] = {}

    def update(self) -> list[dict]:
        try:
            with open(self.path, "rb") as f:
                if os.fstat(f.fileno()).st_size < self.offset:     # replaced: start over
                    self.offset, self.by_epoch = 0, {}
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return self.records()
        end = data.rfind(b"\n") + 1                  # a partial last line waits
        self.offset += end
        for line in data[:end].splitlines():
            if b'"epoch"' not in line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "epoch" and isinstance(ev.get("epoch"), int):
                self.by_epoch[ev["epoch"]] = ev
        return self.records()

    def records(self) -> list[dict]:
        return [self.by_epoch[k] for k in sorted(self.by_epoch)]


def _values(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
            xs.append(r["epoch"])
            ys.append(float(v))
    return xs, ys


def _figure(rows: int, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(12, height), dpi=80)
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(rows, 1, i + 1) for i in range(rows)]


def _save(fig, out: Path) -> Path:
    # fixed margins: tight_layout would draw the figure twice (a third of the CPU time)
    fig.subplots_adjust(left=0.07, right=0.93, top=0.93, bottom=0.04, hspace=0.3)
    atomic_write_file(out, lambda f: fig.savefig(f, format="png"))
    return out


def plot_fold(records: list[dict], out: Path, title: str = "") -> Path:
    """nnU-Net's progress.png panels plus the data-wait fraction."""
    fig, (ax, ax_t, ax_lr, ax_w) = _figure(4, 16)
    fig.suptitle(title or "progress")
    for key, label, colour in (("train_loss", "loss (train)", "b"), ("val_loss", "loss (val)", "r")):
        xs, ys = _values(records, key)
        ax.plot(xs, ys, colour + "-", label=label, linewidth=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    dice_ax = ax.twinx()
    n_cls = max((len(r.get("val_dice_per_class") or []) for r in records), default=0)
    for c in range(n_cls):
        xs = [r["epoch"] for r in records if len(r.get("val_dice_per_class") or []) > c
              and r["val_dice_per_class"][c] is not None]
        ys = [r["val_dice_per_class"][c] for r in records
              if len(r.get("val_dice_per_class") or []) > c and r["val_dice_per_class"][c] is not None]
        dice_ax.plot(xs, ys, linestyle="dotted", linewidth=2, label=f"pseudo dice class {c + 1}")
    xs, ys = _values(records, "val_dice")
    dice_ax.plot(xs, ys, "g:", linewidth=2, label="pseudo dice (mean)")
    xs, ys = _values(records, "ema_dice")
    dice_ax.plot(xs, ys, "g-", linewidth=3, label="pseudo dice (EMA)")
    dice_ax.set_ylabel("pseudo dice")
    dice_ax.set_ylim(0, 1)
    ax.legend(loc=(0, 1.02), ncol=2, fontsize="small")
    dice_ax.legend(loc=(0.45, 1.02), ncol=2, fontsize="small")
    for a, key, label in ((ax_t, "epoch_s", "epoch duration [s]"), (ax_lr, "lr", "learning rate"),
                          (ax_w, "data_wait_frac", "data-wait fraction")):
        xs, ys = _values(records, key)
        a.plot(xs, ys, "b-", linewidth=3, label=label)
        a.set_xlabel("epoch")
        a.set_ylabel(label)
        a.legend(loc="upper right")
    ax_w.set_ylim(0, 1)
    return _save(fig, out)


def plot_overview(configuration: str, folds: dict[int, list[dict]], out: Path) -> Path:
    """Every fold of one configuration overlaid: losses, EMA pseudo-Dice, data wait."""
    fig, (ax_l, ax_d, ax_w) = _figure(3, 12)
    ax_l.set_title(f"{configuration}: all folds")
    for k in sorted(folds):
        recs = folds[k]
        line, = ax_l.plot(*_values(recs, "train_loss"), "-", linewidth=2, label=f"fold {k} train")
        ax_l.plot(*_values(recs, "val_loss"), "--", color=line.get_color(), linewidth=2,
                  label=f"fold {k} val")
        ax_d.plot(*_values(recs, "ema_dice"), "-", color=line.get_color(), linewidth=2,
                  label=f"fold {k} EMA pseudo dice")
        ax_w.plot(*_values(recs, "data_wait_frac"), "-", color=line.get_color(), linewidth=2,
                  label=f"fold {k}")
    for a, label in ((ax_l, "loss"), (ax_d, "pseudo dice (EMA)"), (ax_w, "data-wait fraction")):
        a.set_xlabel("epoch")
        a.set_ylabel(label)
        if a.get_lines():
            a.legend(loc="upper right", fontsize="small", ncol=2)
    ax_d.set_ylim(0, 1)
    ax_w.set_ylim(0, 1)
    return _save(fig, out)


def plot_configuration(layout, configuration: str, folds: list[int],
                       histories: dict | None = None) -> Path | None:
    """The overlay of one configuration's folds (those that finished an epoch)."""
    found = {}
    for k in folds:
        metrics = layout.fold_dir(configuration, k) / "metrics.jsonl"
        if histories is not None:
            h = histories.setdefault(k, EpochHistory(metrics))
            recs = h.update()
        else:
            recs = epoch_records(metrics)
        if recs:
            found[k] = recs
    return plot_overview(configuration, found, layout.progress_overview(configuration)) \
        if found else None


def plot_experiment(exp) -> list[Path]:
    """progress.png of every fold with a metric log, plus each configuration's overlay."""
    lay = exp.layout
    written = []
    for cfg in exp.configurations:
        for k in exp.folds:
            recs = epoch_records(lay.fold_dir(cfg, k) / "metrics.jsonl")
            if recs:
                written.append(plot_fold(recs, lay.progress_png(cfg, k), f"{cfg} fold {k}"))
        overview = plot_configuration(lay, cfg, list(exp.folds))
        if overview:
            written.append(overview)
    return written
