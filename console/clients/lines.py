"""`foldwatch up --headless`: one line per change, the watchdog's decisions, a periodic
summary table, and the final table with the results. The same printer serves the
supervisor in the foreground and a follower of a supervisor that runs already."""

from __future__ import annotations

import signal
import sys
import threading
import time

from console.clients.changes import diff
from console.clients.text import gpu_lines, results_lines, runs_table
from console.protocol.model import ACTIVE_STATES, EngineControl, Snapshot

SHOWN_DECISIONS = {"restart", "give_up", "fail", "stall", "kill", "chaos", "refit", "adopt",
                   "reschedule", "gpu_lost", "reset", "requeue", "busy", "wait", "retry",
                   "state", "cleanup", "bug", "submit_failed", "claim", "stop", "import"}


class LinePrinter:
    def __init__(self, out=None, summary_every_s: float = 60.0) -> None:
        from rich.console import Console
        stream = out or sys.stdout
        # A log file or pipe has no width: rich would squeeze the table into 80 columns.
        width = None if getattr(stream, "isatty", lambda: False)() else 160
        self.console = Console(file=stream, highlight=False, soft_wrap=True, width=width)
        self.summary_every_s = summary_every_s
        self.last: Snapshot | None = None
        self._summary_at = time.monotonic()

    def say(self, text: str) -> None:
        self.console.print(text, markup=False)

    def show(self, snap: Snapshot) -> None:
        """Print what changed since the last snapshot shown."""
        if self.last is None:
            self.console.print(gpu_lines(snap)[0] if snap.cpu_mode else
                               "\n".join(gpu_lines(snap)), markup=False)
        stamp = time.strftime("%H:%M:%S")
        for c in diff(self.last, snap):
            r = c.run
            if c.kind == "state" and (c.before is not None
                                      or r.state not in ("queued", "stopped")):
                where = f" on {r.device}" if r.device and r.state in ("starting", "running") else ""
                note = f"  ({r.message})" if r.message and r.state != "running" else ""
                self.say(f"{stamp} {r.key}: {c.before or '-'} -> {r.state}{where}{note}")
            elif c.kind == "notice":            # damaged state, full disk, no supervisor
                self.say(f"{stamp} ! {c.text}")
            elif c.kind == "decision" and c.decision.action in SHOWN_DECISIONS:
                self.say(f"{stamp} watchdog {c.text}")
        self.last = snap
        if time.monotonic() - self._summary_at >= self.summary_every_s and not snap.finished:
            self._summary_at = time.monotonic()
            self.console.print(runs_table(snap, title=time.strftime("%H:%M:%S")))

    def final(self, snap: Snapshot) -> int:
        """The final table and results; 0 when every run completed, else 1."""
        self.console.print(runs_table(snap, title="final"))
        if snap.results is not None and not snap.results.empty:
            self.console.print("\n".join(results_lines(snap.results, width=self.console.width)),
                               markup=False)
        ok = snap.succeeded
        self.say("all runs completed" if ok else "finished, but not every run completed")
        return 0 if ok else 1


def follow(client: EngineControl, printer: LinePrinter, *, stop_on_exit: bool = False,
           grace_s: float = 40.0, tick_s: float = 0.5) -> int:
    """Print a supervisor's progress until its experiment is finished (exit 0/1), or until
    Ctrl-C (exit 1: the supervisor goes on; with `stop_on_exit` the runs are stopped)."""
    interrupted = threading.Event()
    old = {s: signal.signal(s, lambda *_: interrupted.set())
           for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            snap = client.poll()
            printer.show(snap)
            if snap.finished:
                return printer.final(snap)
            if interrupted.wait(tick_s):
                break
        if stop_on_exit:
            printer.say("stopping every run (--stop-on-exit)...")
            printer.say(client.stop_all(final=False))
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and any(
                    r.state in ACTIVE_STATES for r in client.poll().runs):
                time.sleep(0.2)
        else:
            printer.say("stopped following; supervision continues (`foldwatch up` to watch "
                        "again, `foldwatch down` to stop supervising)")
        return 1
    finally:
        for s, h in old.items():
            signal.signal(s, h)
