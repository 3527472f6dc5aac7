"""The training loop's one hook for pictures: `FoldReporter.after_epoch(trainer, epoch)`.

On the main thread it only runs the few preview patches through the network (needs the
model); progress.png and the PNGs are drawn by the DrawingThread.
"""

from __future__ import annotations

from pathlib import Path

from contracts.experiment import Previews
from trainer.reporting.worker import DrawingThread


class FoldReporter:
    OVERLAY_EVERY = 10     # epochs between redraws of the configuration's all-folds figure

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

    def after_epoch(self, trainer, epoch: int) -> None:
        self.thread.submit("progress", self._progress)
        if self.overlay and (epoch + 1) % self.OVERLAY_EVERY == 0:
            self.thread.submit("overlay", self._overlay)
        s = self.settings
        if s.enabled and self.cases and (epoch + 1) % s.every_epochs == 0:
            from trainer.reporting.preview_sample import pick, score_cases
            scored = score_cases(trainer.net, trainer.plan, self.folder, self.cases,
                                 trainer.device, trainer.amp)
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
        if self.overlay:
            self.thread.submit("overlay", self._overlay)
        self.thread.close()
