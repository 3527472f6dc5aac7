"""progress.png for trainer kinds that do not draw it themselves (nnunetv2, command).

The foldwatch trainer keeps its figures current while it trains; for the other kinds the
controlling console runs `python -m trainer plot` (a subprocess: matplotlib never enters the
console) every few minutes while a metric log has grown since the last drawing.
"""

from __future__ import annotations

import subprocess
import sys
import threading


class KindPlotter:
    def __init__(self, exp, every_s: float = 120.0) -> None:
        self.exp, self.every_s = exp, every_s
        self._stop = threading.Event()
        self._seen: dict[str, float] = {}
        self._thread = threading.Thread(target=self._loop, name="foldwatch-plots", daemon=True)
        self._thread.start()

    def _logs_changed(self) -> bool:
        lay, changed = self.exp.layout, False
        for cfg in self.exp.configurations:
            for k in self.exp.folds:
                path = lay.fold_dir(cfg, k) / "metrics.jsonl"
                try:
                    mtime = path.stat().st_mtime
                except OSError:
                    continue
                if self._seen.get(str(path)) != mtime:
                    self._seen[str(path)], changed = mtime, True
        return changed

    def draw_if_changed(self) -> bool:
        if not self._logs_changed():
            return False
        try:
            subprocess.run([sys.executable, "-m", "trainer", "plot", "--experiment",
                            str(self.exp.source)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        except (OSError, subprocess.TimeoutExpired):
            pass                           # the next pass tries again
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.draw_if_changed()

    def close(self) -> None:
        self._stop.set()
