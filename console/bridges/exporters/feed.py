"""One run's metric log -> one sink, with a persisted cursor so a restart adds no duplicate step.

The cursor (console/exports/<run>.<sink>.json) holds the byte offset of the next complete
line, the log's inode, and the last step written per series. A step at or below the last
one is skipped: an epoch that a killed trainer logged and then redid after `--resume`
appears once, and a log read again from the start (exporter crash) adds nothing.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

from console.store.tailer import Tailer
from contracts.jsonio import atomic_write_json

EPOCH_SCALARS = {            # metrics.jsonl epoch key -> exported tag
    "train_loss": "train/loss",
    "val_loss": "val/loss",
    "val_dice": "val/pseudo_dice",
    "ema_dice": "val/pseudo_dice_ema",
    "lr": "train/lr",
    "epoch_s": "time/epoch_s",
    "data_wait_frac": "time/data_wait_frac",
    "peak_mem_mb": "memory/peak_mb",
}
PREVIEW = re.compile(r"^epoch_(\d+)_(.+)\.png$")


def finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_cursor(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    except (OSError, ValueError):
        pass
    return {}


class RunFeed:
    """`make_sink(generation)`: a new log file in place of the old one (the run was started
    from scratch, its folder moved aside) is a new generation: new sink, steps from 0."""

    def __init__(self, metrics: Path, previews: Path | None, cursor: Path, make_sink) -> None:
        self.metrics, self.previews, self.cursor_path = metrics, previews, cursor
        c = load_cursor(cursor)
        self.generation = int(c.get("generation") or 0)
        self.last: dict[str, int] = dict(c.get("last") or {})
        self.images = int(c.get("images", -1))
        self.ipe = c.get("ipe")
        self.epochs = c.get("epochs")
        self.tailer = Tailer(metrics)
        self.tailer.offset = int(c.get("offset") or 0)
        self.tailer.inode = c.get("inode")
        self.resets = self.tailer.resets
        self.make_sink = make_sink
        self.sink = None

    def _check_generation(self) -> None:
        if self.tailer.resets != self.resets:
            self.resets = self.tailer.resets
            self.generation += 1
            self.last, self.images, self.ipe, self.epochs = {}, -1, None, None
            if self.sink is not None:
                self.sink.close()
                self.sink = None
        if self.sink is None:
            self.sink = self.make_sink(self.generation)

    def _series(self, name: str, step: int, values: dict) -> None:
        values = {k: float(v) for k, v in values.items() if finite(v)}
        if step <= self.last.get(name, -1) or not values:
            return
        self.sink.scalars(name, step, values)
        self.last[name] = step

    def _event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "start":
            self.ipe = ev.get("iterations_per_epoch") or self.ipe
            self.epochs = ev.get("epochs") or self.epochs
        elif kind == "epoch" and isinstance(ev.get("epoch"), int):
            e = ev["epoch"]
            self._images(before=e)
            values = {tag: ev.get(key) for key, tag in EPOCH_SCALARS.items()}
            for c, d in enumerate(ev.get("val_dice_per_class") or []):
                values[f"val/pseudo_dice_class_{c + 1}"] = d
            self._series("epoch", e, values)
        elif (kind == "iter" and isinstance(self.ipe, int) and isinstance(ev.get("epoch"), int)
              and isinstance(ev.get("iter"), int)):
            step = ev["epoch"] * self.ipe + ev["iter"]
            self._series("iter", step, {"train/iter_loss": ev.get("loss"),
                                        "train/samples_per_s": ev.get("samples_per_s"),
                                        "time/iter_data_wait_frac": ev.get("data_wait_frac")})
        elif kind == "validation" and isinstance(self.epochs, int):
            self._images()                 # W&B steps only grow: pictures of epochs first
            self._series("validation", self.epochs, {"val/final_foreground_dice":
                                                     ev.get("foreground_dice")})

    def _images(self, before: int | None = None) -> None:
        """Previews of epochs not exported yet, up to the one latest.json names (its files are
        complete: the index is written after them); `before`: only epochs below it."""
        if self.previews is None or not self.previews.is_dir():
            return
        try:
            index = json.loads((self.previews / "latest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        upto = index.get("epoch")
        if not isinstance(upto, int):
            return
        if before is not None:
            upto = min(upto, before - 1)
        found: dict[int, list[tuple[str, Path]]] = {}
        for f in self.previews.glob("epoch_*.png"):
            m = PREVIEW.match(f.name)
            if m and self.images < int(m.group(1)) <= upto:
                found.setdefault(int(m.group(1)), []).append((m.group(2), f))
        for e in sorted(found):
            try:
                self.sink.images(e, sorted(found[e]))
            except FileNotFoundError:     # pruned meanwhile: the later epochs still come
                pass
            except (OSError, ValueError) as err:   # a damaged picture: skipped, said once
                print(f"foldwatch export: previews of epoch {e} skipped: {err}",
                      file=sys.stderr, flush=True)
            self.images = e

    def pump(self) -> int:
        """Export what was appended since the last call; returns the events read."""
        n = 0
        before = (self.tailer.offset, self.tailer.resets)

        def each(ev: dict) -> None:
            nonlocal n
            n += 1
            self._check_generation()
            self._event(ev)

        self.tailer.read_each(each)
        self._check_generation()
        self._images()
        if n or (self.tailer.offset, self.tailer.resets) != before:
            self.sink.flush()
            self.save()
        return n

    def save(self) -> None:
        atomic_write_json(self.cursor_path, {
            "offset": self.tailer.offset - len(self.tailer.partial), "inode": self.tailer.inode,
            "generation": self.generation, "last": self.last, "images": self.images, "ipe": self.ipe, "epochs": self.epochs})
