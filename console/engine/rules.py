"""What to do when a run ends or goes quiet (docs/console-engine.md, "Watchdog rules").

Pure functions of the run's record, its exit and the experiment's `watchdog:` section, so
the rules are testable without processes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from contracts import exitcodes
from contracts.experiment import Watchdog


@dataclass
class Verdict:
    outcome: str                  # "completed", "stopped", "failed", "restart", "busy", "waiting"
    reason: str
    action: str                   # decision action: complete, stop, give_up, restart, fail
    oom: bool = False


def backoff_delay(restarts: int, cfg: Watchdog, rng: random.Random) -> float:
    """Exponential backoff for the n-th restart (1-based), capped, with +-20% jitter."""
    base = cfg.backoff_initial_s * (2 ** max(0, restarts - 1))
    return min(cfg.backoff_max_s, base * rng.uniform(0.8, 1.2))


def describe_exit(code: int | None) -> str:
    if code is None:
        return "vanished without an end event"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _meaningful(line: str) -> bool:
    """Not a traceback frame, caret line or blank: a line that says something."""
    t = line.strip()
    return bool(t) and not (t.startswith(("File \"", "Traceback (", "^", "~", "During handling",
                                          "The above exception"))
                            or set(t) <= set("^~ "))


def explain(end: dict | None, stderr_lines: list[str] | None = None) -> str | None:
    """Why the trainer failed, in its own words: `end.message` (the whole of it); else the
    last meaningful line of `end.error`; else the last meaningful stderr lines."""
    if end:
        msg = end.get("message")
        if isinstance(msg, str) and msg.strip():
            return msg.strip()
        err = end.get("error")
        if isinstance(err, str):
            lines = [l.strip() for l in err.splitlines() if _meaningful(l)]
            if lines:
                return lines[-1]
    return _from_stderr(stderr_lines or [])


def _from_stderr(raw: list[str]) -> str | None:
    """The exception of the last traceback (its unindented lines), else the last few lines."""
    lines = [l.rstrip() for l in raw if l.strip()]
    tbs = [i for i, l in enumerate(lines) if l.startswith("Traceback (")]
    if tbs:
        exc = [l for l in lines[tbs[-1] + 1:] if not l[:1].isspace() and _meaningful(l)]
        if exc:
            return "\n".join(exc[-3:])
    said = [l for l in lines if _meaningful(l)]
    return "\n".join(said[-5:]) if said else None


def judge_exit(code: int | None, end: dict | None, *, stop_requested: bool, stalled: bool,
               restarts: int, cfg: Watchdog, enabled: bool,
               stderr_lines: list[str] | None = None) -> Verdict:
    """The verdict on a run whose process is gone. `code` None = unknown (adopted run).
    Outcomes beyond the final states: "restart", "busy" (exit 73: another process holds the
    run folder), "waiting" (exit 74: no space left; neither counts a restart)."""
    if code is None and end is not None and isinstance(end.get("exit_code"), int):
        code = end["exit_code"]
    if stop_requested and not stalled:
        return Verdict("stopped", "stopped on request", "stopped")
    said = explain(end, stderr_lines if end is None else None)
    tail = f": {said}" if said else ""
    if not stalled:
        if code == 0:
            if end is not None and end.get("status") == "stopped":
                return Verdict("stopped", "the trainer stopped on a signal (checkpoint saved)",
                               "stopped")
            return Verdict("completed", "finished", "complete")
        if code in exitcodes.PERMANENT:
            kind = "configuration" if code == exitcodes.USAGE else "dataset"
            return Verdict("failed", f"{kind} error (exit {code}, never restarted)"
                           + (tail or f": exit code {code}"), "fail")
        if code == exitcodes.INTERRUPTED:
            return Verdict("stopped", "interrupted (SIGINT, exit 130): treated as a stop",
                           "stopped")
        if code == exitcodes.BUSY:
            return Verdict("busy", "another process holds the run folder (exit 73)", "adopt")
        if code == exitcodes.NO_SPACE:
            return Verdict("waiting", f"no space left (exit 74){tail}", "wait")
    oom = code == exitcodes.TRANSIENT
    if stalled:
        why = "stalled (no new event), stopped by the watchdog"
    elif oom:
        why = "out of memory / transient failure (exit 75)"
    else:
        why = f"crashed ({describe_exit(code)})" + (tail if code not in (None,) and code > 0
                                                    else "")
    if not enabled:
        return Verdict("failed", f"{why}; watchdog off, not restarted", "fail", oom)
    if restarts >= cfg.max_restarts:
        return Verdict("failed", f"{why}; gave up after {restarts} restarts "
                       f"(max_restarts={cfg.max_restarts})", "give_up", oom)
    return Verdict("restart", why, "restart", oom)


def refit_after_oom(batch_size: int, grad_accumulation: int) -> dict | None:
    """Halved batch, doubled accumulation (same effective batch); None when batch is 1."""
    if batch_size <= 1:
        return None
    return {"batch_size": batch_size // 2, "grad_accumulation": grad_accumulation * 2}


# Stop causes that mean "the cluster ended it, carry on": Slurm's pre-walltime SIGUSR2,
# preemption, node failure. Resubmitted with --resume, no restart counted.
CLUSTER_CAUSES = ("timeout", "preempted", "node_fail")


def cluster_stop(end: dict | None, ended_by: str | None, *, stop_requested: bool,
                 queued_backend: bool) -> str | None:
    """Why a run ended without the console asking and should simply carry on, or None.

    `ended_by` is the backend's reading (Slurm job state TIMEOUT/PREEMPTED/NODE_FAIL, or
    `cancelled` by someone else's scancel). On a batch system every stop the console did not
    ask for came from the cluster or its admins; locally only walltime/preemption causes do.
    """
    if stop_requested:
        return None
    cause = end.get("stop_cause") if end and end.get("status") == "stopped" else None
    if cause in CLUSTER_CAUSES:
        return cause
    if ended_by in CLUSTER_CAUSES:
        return ended_by
    if queued_backend and (ended_by == "cancelled" or (end and end.get("status") == "stopped")):
        return "cancelled" if ended_by == "cancelled" else (cause or "signal")
    return None
