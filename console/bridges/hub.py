"""What the supervisor runs beside the engine: the exporter subprocess, the notifier, the
progress figures and the Prometheus endpoint."""

from __future__ import annotations

import threading

WATCH_S = 30.0      # how often a crashed exporter is noticed and started again


class Bridges:
    def __init__(self, exp, *, active: bool, console_dir=None) -> None:
        """`console_dir`: where the engine keeps its state.json and events.jsonl."""
        self.exporter = self.notifier = self.plotter = self.metrics = None
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
        if exp.metrics.listen is not None:      # prometheus_client is imported only then
            from console.bridges.prometheus.server import MetricsServer
            # a team member's supervisor keeps its own folder; the others' runs run elsewhere
            team = console_dir is not None and console_dir != exp.layout.console_dir
            self.metrics = MetricsServer(exp, team_split=team)

    def tick(self, snap) -> None:
        """Every supervisor tick, before `snap` is published: the metrics serve it from now
        on, and what the bridges need the user to see joins its notices."""
        if self.metrics is not None:
            self.metrics.tick(snap)
            if self.metrics.notice:
                snap.notices.append(self.metrics.notice)

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_S):
            self.exporter.ensure()

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        if self.plotter is not None:
            self.plotter.close()
        if self.exporter is not None:
            self._stop.set()
        if self.notifier is not None:
            self.notifier.close()
        if self.exporter is not None:
            self.exporter.stop()
