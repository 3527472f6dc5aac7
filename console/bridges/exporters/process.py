"""Starting the exporter from the console: a child process, so nothing it imports or does can
slow the console's tick; it follows the console's life (exits when its parent is gone)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading


def sinks_wanted(exp) -> list[str]:
    """The exporter's sinks: TensorBoard, and W&B unless the folds log to W&B themselves
    (trainer: nnunetv2 switches nnU-Net's own W&B logger on instead: console/kinds/nnunet.py)."""
    out = ["tensorboard"] if exp.export.tensorboard else []
    if exp.export.wandb is not None and not exp.wandb_by_trainer:
        out.append("wandb")
    return out


class ExporterProcess:
    MAX_RESTARTS = 3

    def __init__(self, exp, interval_s: float = 5.0) -> None:
        self.exp, self.interval_s = exp, interval_s
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.stopped = False
        self._lock = threading.Lock()      # the console's watcher thread vs. stop()

    def ensure(self) -> None:
        """Start it again after a crash (a few times: a broken install would loop forever);
        exit 2 = a switched-on library is missing, said in exporter.log, not retried."""
        with self._lock:
            if self.stopped or self.proc is None or self.proc.poll() is None:
                return
            code = self.proc.returncode
            self.proc = None
            if code not in (0, 2) and self.restarts < self.MAX_RESTARTS:
                self.restarts += 1
                self._start()

    @property
    def wanted(self) -> bool:
        return bool(sinks_wanted(self.exp))

    @property
    def wandb_mode(self) -> str:
        """export.wandb.mode: offline unless the file says online (never the user's shell)."""
        return self.exp.export.wandb.mode if self.exp.export.wandb else "offline"

    def start(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> None:
        if not self.wanted or self.proc is not None or self.stopped:
            return
        log_dir = self.exp.layout.exports_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / "exporter.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "console.bridges.exporters", str(self.exp.source),
                 "--parent", str(os.getpid()), "--interval", str(self.interval_s)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                env={**os.environ, "WANDB_MODE": self.wandb_mode})

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM: the exporter exports what is left, closes its runs and exits."""
        with self._lock:
            self.stopped = True
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code, self.proc = self.proc.returncode, None
        return code
