"""What changed between two snapshots: the one diff the Textual app (notifications) and the
headless mode (log lines) both print from."""

from __future__ import annotations

from dataclasses import dataclass

from console.protocol.model import ACTIVE_STATES, Decision, RunView, Snapshot

NOTABLE_STATES = {"completed": "information", "failed": "error", "stalled": "warning"}


@dataclass
class Change:
    kind: str                      # "state", "restart", "decision", "notice", "finished"
    text: str                      # one human line
    severity: str = "information"  # information, warning, error (Textual's notify levels)
    run: RunView | None = None
    before: str | None = None      # "state": the previous state (None: first snapshot)
    decision: Decision | None = None

    @property
    def notable(self) -> bool:
        """Worth a notification in the app (a restart, a failure, a completion, a stop, a
        request from another shell, the end)."""
        if self.kind in ("restart", "restarted", "finished", "notice", "request"):
            return True
        if self.kind != "state" or self.before is None:
            return False
        return self.run.state in NOTABLE_STATES or (
            self.run.state == "stopped" and self.before in ACTIVE_STATES)


def _notice_kind(text: str) -> str:
    return text.split(":", 1)[0]


def diff(old: Snapshot | None, new: Snapshot) -> list[Change]:
    """Changes from `old` to `new`; with no `old`, every run's state (before None)."""
    before = {r.key: r for r in old.runs} if old is not None else {}
    out: list[Change] = []
    for r in new.runs:
        prev = before.get(r.key)
        why = f": {r.message}" if r.message else ""
        if prev is not None and r.restarts > prev.restarts:
            # the watchdog has decided; the restart itself comes after the backoff
            out.append(Change("restart", f"{r.label} exited{why}; the watchdog restarts it "
                              "after a backoff", "warning", r))
        if (prev is not None and prev.state in ("backoff", "waiting")
                and r.state in ("starting", "running") and r.restarts):
            out.append(Change("restarted", f"{r.label} restarted (attempt {r.restarts})",
                              "information", r))
        if prev is None or r.state != prev.state:
            text = f"{r.label} {r.state}" + (why if r.state in ("failed", "stalled") else "")
            out.append(Change("state", text, NOTABLE_STATES.get(r.state, "information"), r,
                              before=prev.state if prev is not None else None))
    # A notice is new when its kind is (the text before its first colon): "waiting for disk
    # space (2d/0): 3.1 MB free" changing its number every tick is not a new notice.
    known = {_notice_kind(n) for n in old.notices} if old is not None else set()
    out += [Change("notice", n, "error") for n in new.notices if _notice_kind(n) not in known]
    if old is not None:
        seen = old.decisions[-1].t if old.decisions else float("-inf")
        for d in new.decisions:
            if d.t > seen:
                out.append(Change("decision", f"{d.action} {d.run_key or ''}: {d.reason}",
                                  decision=d))
                if d.action == "request":     # `foldwatch stop` in another shell
                    what = f"stop {d.run_key}" if d.run_key else "stop all"
                    out.append(Change("request", f"{what} requested from another shell "
                                      f"({d.reason})", "warning", decision=d))
        if new.finished and not old.finished:
            ok = new.succeeded
            out.append(Change("finished", "pipeline finished: " + (
                "everything completed" if ok else "some runs did not complete"),
                "information" if ok else "warning"))
    return out


def describe_changes(old: Snapshot | None, new: Snapshot) -> list[tuple[str, str]]:
    """Notifications (message, severity) for the app."""
    return [(c.text, c.severity) for c in diff(old, new)
            if c.notable and (old is not None or c.kind == "notice")]
