"""What a controlling console runs beside the engine: the exporter subprocess and notifier."""

from __future__ import annotations

import threading

WATCH_S = 30.0      # how often a crashed exporter is noticed and started again


class Bridges:
    def __init__(self, exp, *, active: bool, console_dir=None) -> None:
        """`console_dir`: where the engine keeps its state.json and events.jsonl."""
        self.exporter = self.notifier = self.plotter = None
        if not active:
            return                       # read-only consoles: the controlling one does this
        from console.bridges.exporters.process import ExporterProcess, sinks_wanted
        if sinks_wanted(exp):
            self.exporter = ExporterProcess(exp)
            self.exporter.start()
            self._stop = threading.Event()
            threading.Thread(target=self._watch, name="foldwatch-exporter-watch",
                             daemon=True).start()
        if getattr(exp, "trainer", "foldwatch") != "foldwatch":
            from console.bridges.plotter import KindPlotter       # the others draw no progress.png
            self.plotter = KindPlotter(exp)
        if exp.notify.command or exp.notify.urls:
            from console.bridges.notify import Notifier
            self.notifier = Notifier(exp, console_dir=console_dir)
            self.notifier.start()

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_S):
            self.exporter.ensure()

    def close(self) -> None:
        if self.plotter is not None:
            self.plotter.close()
        if self.exporter is not None:
            self._stop.set()
        if self.notifier is not None:
            self.notifier.close()
        if self.exporter is not None:
            self.exporter.stop()
