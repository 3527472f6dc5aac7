"""The training loop's one hook for pictures: `FoldReporter.after_epoch(trainer, epoch)`.

On the main thread it only runs the few preview patches through the network (needs the
model); progress.png and the PNGs are drawn by the DrawingThread. A matplotlib figure costs
about a CPU second, so with epochs shorter than PLOT_EVERY_S progress.png is redrawn at
most that often (and once more at the end). FOLDWATCH_PROGRESS_PLOT=0 switches the figures
off (tests and benchmarks that do not look at them); previews follow `previews.enabled`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from contracts.experiment import Previews
from trainer.reporting.worker import DrawingThread


class FoldReporter:
    OVERLAY_EVERY = 10     # epochs between redraws of the configuration's all-folds figure
    PLOT_EVERY_S = 30.0    # at most this often for short epochs

    def __init__(self, *, metrics: Path, progress_png: Path, previews_dir: Path, title: str,
                 val_cases: list[str], folder: Path, settings: Previews,
                 overlay: tuple | None = None) -> None:
        """`overlay`: (layout, configuration, folds) to keep that figure current too."""
        from trainer.reporting.progress_plot import EpochHistory
        self.metrics, self.progress_png, self.previews_dir = metrics, progress_png, previews_dir
        self.history = EpochHistory(metrics)
        self.overlay, self.overlay_histories = overlay, {}
        self.title = title
        self.settings = settings
        self.folder = folder
        self.cases = sorted(val_cases)[: max(settings.scored_cases, settings.cases)]
        self.thread = DrawingThread()
        self.plots = os.environ.get("FOLDWATCH_PROGRESS_PLOT", "1") != "0"
        self.last_plot: float | None = None
        self.stale = False           # an epoch ended after the last submitted progress.png

    def after_epoch(self, trainer, epoch: int) -> None:
        now = time.monotonic()
        if self.plots and (self.last_plot is None or now - self.last_plot >= self.PLOT_EVERY_S):
            self.thread.submit("progress", self._progress)
            self.last_plot, self.stale = now, False
            if self.overlay and (epoch + 1) % self.OVERLAY_EVERY == 0:
                self.thread.submit("overlay", self._overlay)
        else:
            self.stale = self.plots
        s = self.settings
        if s.enabled and self.cases and (epoch + 1) % s.every_epochs == 0:
            from trainer.reporting.preview_sample import pick, score_cases
            try:
                scored = score_cases(trainer.net, trainer.plan, self.folder, self.cases,
                                     trainer.device, trainer.amp, trainer.val_data.previous)
            except Exception as e:   # a picture must never end a run (e.g. a case file gone)
                print(f"foldwatch: previews of epoch {epoch} skipped: {type(e).__name__}: {e}",
                      file=sys.stderr, flush=True)
                return
            chosen = pick(scored, s.cases)
            self.thread.submit(f"previews-{epoch}", lambda: self._previews(chosen, epoch))

    def _progress(self) -> None:
        from trainer.reporting.progress_plot import plot_fold
        plot_fold(self.history.update(), self.progress_png, self.title)

    def _overlay(self) -> None:
        from trainer.reporting.progress_plot import plot_configuration
        layout, configuration, folds = self.overlay
        plot_configuration(layout, configuration, folds, self.overlay_histories)

    def _previews(self, chosen, epoch: int) -> None:
        from trainer.reporting.previews import write_previews
        write_previews(chosen, self.previews_dir, epoch, "epoch")

    def close(self) -> None:
        """Draw what is left, the overlay included, then stop the thread."""
        if self.stale:
            self.thread.submit("progress", self._progress)
        if self.overlay and self.plots:
            self.thread.submit("overlay", self._overlay)
        self.thread.close()
