"""The first phase of a tick: read what each run appended to its metrics.jsonl."""

from __future__ import annotations

from typing import Callable

from console.engine.runstate import RunState as S
from console.engine.runstate import Run


class LogReader:
    """Feeds each run's new log lines to its metrics; notices activity, the first `start` of
    an attempt, and a new resumable checkpoint (which resets the restart counter)."""

    def __init__(self, decide: Callable, *, watching: bool = True) -> None:
        self.decide = decide
        self.watching = watching        # False: an offline view judges nothing

    def read_all(self, runs, now: float) -> None:
        for run in runs:
            self.read(run, now)

    def read(self, run: Run, now: float) -> None:
        before = run.tailer.offset, run.tailer.resets

        def feed(ev: dict) -> None:
            run.metrics.feed(ev)
            # A new resumable checkpoint (checkpoint-then-announce) proves progress: the
            # restart counter starts again, so only a crash loop is given up on. An `epoch`
            # line does not count: it may precede a checkpoint save that fails.
            epoch = ev.get("epoch")
            if (ev.get("event") == "checkpoint" and ev.get("kind") == "latest"
                    and isinstance(epoch, int) and run.handle is not None and self.watching
                    and run.metrics.starts > run.starts_at_launch
                    and (run.ckpt_mark is None or epoch > run.ckpt_mark)):
                run.ckpt_mark = epoch
                if run.restarts:
                    self.decide(run, "reset", f"saved a new checkpoint (epoch {epoch}) after "
                                f"a restart; restart counter {run.restarts} -> 0")
                    run.restarts = 0

        run.tailer.read_each(feed)
        if (run.tailer.offset, run.tailer.resets) != before:
            run.last_activity = now
            if run.state == S.STARTING and run.metrics.starts > run.starts_at_launch:
                run.state = S.RUNNING
            elif run.state == S.STALLED and not run.stalled:
                run.state = S.RUNNING
