"""progress.png per fold and one overlay figure per configuration, from metrics.jsonl alone.

Only the `epoch` events are used, so any trainer kind that writes the metric log gets the
same figures. Drawn with matplotlib's object API on the Agg canvas (no pyplot state), which
is safe in a background thread.
"""

from __future__ import annotations

import math
from pathlib import Path

from contracts.jsonio import atomic_write_file, iter_jsonl


def epoch_records(metrics: Path) -> list[dict]:
    """The `epoch` events in epoch order; an epoch logged twice (redone after a kill) keeps
    its last record, so a restarted run still draws one continuous curve."""
    by_epoch: dict[int, dict] = {}
    if not Path(metrics).exists():
        return []
    for ev in iter_jsonl(metrics):
        if ev.get("event") == "epoch" and isinstance(ev.get("epoch"), int):
            by_epoch[ev["epoch"]] = ev
    return [by_epoch[k] for k in sorted(by_epoch)]


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
    fig.tight_layout()
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


def plot_experiment(exp) -> list[Path]:
    """progress.png of every fold with a metric log, plus each configuration's overlay."""
    lay = exp.layout
    written = []
    for cfg in exp.configurations:
        folds = {}
        for k in exp.folds:
            metrics = lay.fold_dir(cfg, k) / "metrics.jsonl"
            recs = epoch_records(metrics)
            if not recs:
                continue
            folds[k] = recs
            written.append(plot_fold(recs, lay.progress_png(cfg, k), f"{cfg} fold {k}"))
        if folds:
            written.append(plot_overview(cfg, folds, lay.progress_overview(cfg)))
    return written
