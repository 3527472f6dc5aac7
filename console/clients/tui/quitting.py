"""What happens after the console closes: stop everything (Q), say where the results are (q)."""

from __future__ import annotations

import time

from console.protocol.model import ACTIVE_STATES, EngineControl, Snapshot
from console.clients.text import results_lines


def stop_all_and_wait(engine: EngineControl, timeout_s: float = 60.0,
                      final: bool = True) -> int:
    """Stop every run and keep polling (the supervisor escalates to SIGKILL) until none is
    active; `final`: the user's wish (False: --stop-on-exit, `foldwatch up` continues them)."""
    engine.stop_all(final=final)
    deadline = time.monotonic() + timeout_s
    while True:
        active = [r for r in engine.poll().runs if r.state in ACTIVE_STATES]
        if not active or time.monotonic() > deadline:
            return len(active)
        time.sleep(0.2)


def after_close(engine: EngineControl, snap: Snapshot | None, *, stop_all: bool,
                stop_on_exit: bool) -> None:
    """What the terminal says once the window is closed: the runs stopped (Q, or
    --stop-on-exit), whether supervision goes on, where the results are."""
    if stop_all or stop_on_exit:
        print("foldwatch: stopping all runs …", flush=True)
        left = stop_all_and_wait(engine, final=stop_all)
        print("foldwatch: all runs stopped" if not left else
              f"foldwatch: {left} runs still stopping; check with `foldwatch status`")
    sup = snap.supervisor if snap is not None else None
    if sup is not None and sup.state in ("alive", "starting"):
        print(f"foldwatch: supervision continues (pid {sup.pid}); `foldwatch up` to reopen, "
              "`foldwatch down` to stop supervising")
    elif sup is not None:
        print(f"foldwatch: {sup.text}")
    print_results(snap)


def print_results(snap: Snapshot | None) -> None:
    """On quit: where the results are (all of them once the pipeline has finished)."""
    if snap is None or snap.results is None:
        return
    if snap.finished and not snap.results.empty:
        print("\n".join(results_lines(snap.results)))
    else:
        print(f"foldwatch: results are written to {snap.results.root}")
