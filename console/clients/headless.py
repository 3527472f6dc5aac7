"""`foldwatch up --headless`: the engine without a UI. One line per state change, the
watchdog's decisions, a periodic summary table; exit 0 when everything completed, else 1."""

from __future__ import annotations

import signal
import sys
import threading
import time

from console.clients.changes import diff
from console.engine.results import results_lines
from console.clients.text import gpu_lines, runs_table

SHOWN_DECISIONS = {"restart", "give_up", "fail", "stall", "kill", "chaos", "refit", "adopt",
                   "reschedule", "gpu_lost", "reset", "request", "requeue", "busy", "wait",
                   "retry", "state", "cleanup", "bug", "submit_failed", "claim"}


def run_headless(engine, *, stop_on_exit: bool = False, summary_every_s: float = 60.0,
                 tick_s: float = 0.5, out=None) -> int:
    from rich.console import Console
    stream = out or sys.stdout
    # A log file or pipe has no width: rich would squeeze the table into 80 columns.
    width = None if getattr(stream, "isatty", lambda: False)() else 160
    console = Console(file=stream, highlight=False, soft_wrap=True, width=width)
    interrupted = threading.Event()

    def on_signal(signum, frame):
        interrupted.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    last_summary = time.monotonic()
    code = 1
    try:
        snap = engine.poll()
        console.print(gpu_lines(snap)[0] if snap.cpu_mode else "\n".join(gpu_lines(snap)))
        last = None
        while True:
            stamp = time.strftime("%H:%M:%S")
            for c in diff(last, snap):
                r = c.run
                if c.kind == "state" and (c.before is not None
                                          or r.state not in ("queued", "stopped")):
                    where = f" on {r.device}" if r.device and r.state in ("starting", "running") else ""
                    note = f"  ({r.message})" if r.message and r.state != "running" else ""
                    console.print(f"{stamp} {r.key}: {c.before or '-'} -> {r.state}{where}{note}")
                elif c.kind == "notice":            # damaged state, full disk, missing GPU
                    console.print(f"{stamp} ! {c.text}")
                elif c.kind == "decision" and c.decision.action in SHOWN_DECISIONS:
                    console.print(f"{stamp} watchdog {c.text}")
            last = snap
            if snap.finished:
                console.print(runs_table(snap, title="final"))
                if snap.results is not None and not snap.results.empty:
                    console.print("\n".join(results_lines(snap.results)), markup=False)
                code = 0 if snap.succeeded else 1
                console.print("all runs completed" if code == 0 else
                              "finished, but not every run completed")
                return code
            if time.monotonic() - last_summary >= summary_every_s:
                last_summary = time.monotonic()
                console.print(runs_table(snap, title=time.strftime("%H:%M:%S")))
            if interrupted.wait(tick_s):
                break
            snap = engine.poll()
        # interrupted by SIGINT/SIGTERM
        if stop_on_exit:
            console.print("stopping every run (--stop-on-exit)...")
            engine.stop_all(final=False)      # `foldwatch up` again continues them
            deadline = time.monotonic() + engine.exp.watchdog.grace_period_s + 10
            while time.monotonic() < deadline:
                snap = engine.poll()
                if not any(r.pid or r.job for r in snap.runs):
                    break
                time.sleep(0.2)
        else:
            alive = [r.key for r in snap.runs if r.pid or r.job]
            if alive:
                console.print(f"leaving {len(alive)} run(s) running ({', '.join(alive)}); "
                              "`foldwatch up` again adopts them, `foldwatch stop` stops them")
        return 1
    finally:
        engine.close()
        for s, h in old.items():
            signal.signal(s, h)
