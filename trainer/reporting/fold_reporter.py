"""The training loop's one hook for pictures: `FoldReporter.after_epoch(trainer, epoch)`.

On the main thread it only runs the few preview patches through the network (needs the
model); progress.png and the PNGs are drawn by the DrawingThread.
"""

from __future__ import annotations

from pathlib import Path

from contracts.experiment import Previews
from trainer.reporting.worker import DrawingThread


class FoldReporter:
    def __init__(self, *, metrics: Path, progress_png: Path, previews_dir: Path, title: str,
                 val_cases: list[str], folder: Path, settings: Previews) -> None:
        self.metrics, self.progress_png, self.previews_dir = metrics, progress_png, previews_dir
        self.title = title
        self.settings = settings
        self.folder = folder
        self.cases = sorted(val_cases)[: max(settings.scored_cases, settings.cases)]
        self.thread = DrawingThread()

    def after_epoch(self, trainer, epoch: int) -> None:
        self.thread.submit("progress", self._progress)
        s = self.settings
        if s.enabled and self.cases and (epoch + 1) % s.every_epochs == 0:
            from trainer.reporting.preview_sample import pick, score_cases
            scored = score_cases(trainer.net, trainer.plan, self.folder, self.cases,
                                 trainer.device, trainer.amp)
            chosen = pick(scored, s.cases)
            self.thread.submit(f"previews-{epoch}", lambda: self._previews(chosen, epoch))

    def _progress(self) -> None:
        from trainer.reporting.progress_plot import epoch_records, plot_fold
        plot_fold(epoch_records(self.metrics), self.progress_png, self.title)

    def _previews(self, chosen, epoch: int) -> None:
        from trainer.reporting.previews import write_previews
        write_previews(chosen, self.previews_dir, epoch, "epoch")

    def close(self) -> None:
        self.thread.close()
