"""A daemon thread that draws the pictures, so the training loop never waits for them."""

from __future__ import annotations

import sys
import threading
import traceback
from collections import OrderedDict
from typing import Callable


class DrawingThread:
    """Runs submitted jobs in order; a newer job of the same name replaces a queued one
    (a slow disk then skips stale progress plots instead of piling them up)."""

    def __init__(self, name: str = "foldwatch-pictures") -> None:
        self._jobs: OrderedDict[str, Callable[[], object]] = OrderedDict()
        self._cv = threading.Condition()
        self._busy = False
        self._closed = False
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, name: str, job: Callable[[], object]) -> None:
        with self._cv:
            self._jobs.pop(name, None)
            self._jobs[name] = job
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and not self._closed:
                    self._cv.wait()
                if not self._jobs:
                    return
                _, job = self._jobs.popitem(last=False)
                self._busy = True
            try:
                job()
            except Exception:              # a picture must never end a training run
                self.errors += 1
                print("foldwatch: drawing a picture failed (training goes on):\n"
                      + traceback.format_exc(limit=3), file=sys.stderr, flush=True)
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every submitted job ran (at exit); False when the timeout passed."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._jobs and not self._busy, timeout)

    def close(self, timeout: float = 60.0) -> None:
        self.drain(timeout)
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=1.0)
