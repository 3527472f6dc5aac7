"""The exporter loop: every fold of the experiment, each enabled sink, until told to stop."""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from pathlib import Path

from contracts.experiment import Experiment

from console.bridges.exporters.feed import RunFeed
from console.bridges.exporters.process import sinks_wanted


MAX_FAILURES = 3        # consecutive failed passes before a run's sink is given up


def _slug(configuration: str, fold: int) -> str:
    return f"{configuration}_fold_{fold}"


class Exporter:
    def __init__(self, exp: Experiment) -> None:
        self.exp = exp
        self.layout = exp.layout
        self.feeds: dict[tuple[str, int, str], RunFeed] = {}
        self.failures: dict[tuple[str, int, str], int] = {}

    def sinks_wanted(self) -> list[str]:
        return sinks_wanted(self.exp)

    def _sink(self, name: str, configuration: str, fold: int, generation: int):
        from console.bridges.exporters import sinks
        if name == "tensorboard":
            return sinks.TensorBoardSink(self.layout.tensorboard(configuration, fold))
        return sinks.WandbSink(self.layout.wandb_dir, self.exp.experiment, configuration, fold,
                               generation, project=self.exp.wandb_project,
                               mode=self.exp.export.wandb.mode)

    def pump(self) -> int:
        """One pass over every run with a metric log; returns the events exported."""
        n = 0
        for cfg in self.exp.configurations:
            for fold in self.exp.folds:
                metrics = self.layout.fold_dir(cfg, fold) / "metrics.jsonl"
                if not metrics.exists():
                    continue
                for name in self.sinks_wanted():
                    key = (cfg, fold, name)
                    if self.failures.get(key, 0) >= MAX_FAILURES:
                        continue                  # said in the log; the other sinks go on
                    if key not in self.feeds:
                        cursor = self.layout.exports_dir / f"{_slug(cfg, fold)}.{name}.json"
                        self.feeds[key] = RunFeed(
                            metrics, self.layout.previews(cfg, fold), cursor,
                            lambda g, name=name, cfg=cfg, fold=fold: self._sink(name, cfg, fold, g))
                    try:
                        n += self.feeds[key].pump()
                        self.failures.pop(key, None)
                    except Exception as e:        # one sink's trouble must not stop the rest
                        self._failed(key, e)
        return n

    def _failed(self, key, error: Exception) -> None:
        self.failures[key] = self.failures.get(key, 0) + 1
        feed = self.feeds.pop(key, None)
        if feed is not None and feed.sink is not None:
            try:
                feed.sink.close()
            except Exception:
                pass
        cfg, fold, name = key
        gave_up = self.failures[key] >= MAX_FAILURES
        print(f"foldwatch export: {cfg}/{fold} -> {name}: {type(error).__name__}: {error}"
              + ("; giving up on this sink for this run" if gave_up else "; retried next pass"),
              file=sys.stderr, flush=True)

    def close(self) -> None:
        for feed in self.feeds.values():
            if feed.sink is None:
                continue
            try:
                feed.sink.close()
            except Exception as e:            # one sink's trouble must not lose the others
                print(f"foldwatch export: closing {feed.sink.name}: {e}", file=sys.stderr)
        self.feeds.clear()


def hold_lock(layout) -> object | None:
    """One exporter per experiment (a second would write every step twice)."""
    layout.exports_dir.mkdir(parents=True, exist_ok=True)
    f = open(layout.exports_dir / "lock", "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


NEEDS = {"tensorboard": ("tensorboardX", "tensorboard"), "wandb": ("wandb", "wandb")}


def missing_packages(sinks: list[str]) -> list[str]:
    """One line per switched-on sink whose library is not installed."""
    import importlib.util
    return [f"export.{s} needs the {NEEDS[s][0]} package; install it with "
            f"pip install 'foldwatch[{NEEDS[s][1]}]' (or switch export.{s} off)"
            for s in sinks if importlib.util.find_spec(NEEDS[s][0]) is None]


def run(exp: Experiment, *, once: bool, interval: float, parent: int | None) -> int:
    exporter = Exporter(exp)
    if not exporter.sinks_wanted():
        if exp.wandb_by_trainer:
            print(f"{exp.source}: export.wandb: nnU-Net writes each fold's W&B run itself "
                  "(fold_<k>/wandb/ in $nnUNet_results, docs/trainers.md); nothing to export")
        else:
            print(f"{exp.source}: export: switches no bridge on (tensorboard: true / "
                  "wandb: true)")
        return 0
    missing = missing_packages(exporter.sinks_wanted())
    if missing:
        print("error: " + "\n".join(f"{exp.source}: {m}" for m in missing), file=sys.stderr)
        return 2
    lock = hold_lock(exp.layout)
    if lock is None:
        print(f"{exp.layout.exports_dir}: another exporter is running for this experiment",
              file=sys.stderr)
        return 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        while True:
            exporter.pump()
            if once or stop or (parent and os.getppid() != parent):
                break
            deadline = time.monotonic() + interval
            while time.monotonic() < deadline and not stop:
                time.sleep(0.2)
        exporter.pump()                    # what arrived while stopping
    finally:
        exporter.close()
        lock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m console.bridges.exporters",
                                description="export metric logs to TensorBoard / W&B")
    p.add_argument("experiment", type=Path)
    p.add_argument("--once", action="store_true", help="export what is there, then exit")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between passes")
    p.add_argument("--parent", type=int, help="exit when this process (the console) is gone")
    args = p.parse_args(argv)
    from contracts.errors import UserError
    from contracts.experiment import load_experiment
    try:
        exp = load_experiment(args.experiment)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return run(exp, once=args.once, interval=args.interval, parent=args.parent)
