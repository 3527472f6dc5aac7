"""`foldwatch status` and `foldwatch stop`: clients of the supervisor, from any shell."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from console.protocol import attach, channel
from console.protocol import presence as pr
from console.protocol.client import SupervisorClient
from console.protocol.model import ACTIVE_STATES, Snapshot
from contracts.errors import ConfigError, UserError
from contracts.experiment import Experiment, load_experiment
from contracts.layout import SupervisorHome


def _home(exp: Experiment) -> SupervisorHome:
    """The experiment's supervisor; in a team split with no main one, the member whose
    snapshot is newest (each shows every run: others' runs read from their folders)."""
    main = exp.layout.supervisor_home()
    if main.snapshot.exists() or main.lock.exists():
        return main
    members = sorted(exp.layout.console_dir.glob("consoles/*/snapshot.json"),
                     key=lambda p: p.stat().st_mtime if p.exists() else 0)
    return SupervisorHome(members[-1].parent) if members else main


def _offline(exp: Experiment) -> Snapshot:
    """No supervisor ever ran here: what the run folders say (writes nothing)."""
    from console.engine.core import Engine
    with Engine(exp, read_only=True) as eng:
        return eng.poll()


def status(exp_path: Path, as_json: bool) -> int:
    exp = load_experiment(exp_path)
    client = SupervisorClient(exp.source, _home(exp), kind="status", read_only=True)
    snap = client.poll()
    if client.presence.state == "never":
        snap = _offline(exp)
        snap.read_only, snap.supervisor = True, client.poll().supervisor
        snap.notices.insert(0, pr.describe(client.presence))
    if as_json:
        from console.clients.text import snapshot_json
        from contracts.jsonio import dumps
        print(dumps(snapshot_json(snap), indent=2))
        return 0
    from rich.console import Console
    from console.clients.text import gpu_lines, results_lines, runs_table
    c = Console(width=None if sys.stdout.isatty() else 160)
    for line in gpu_lines(snap):
        c.print(line, markup=False, highlight=False)
    if snap.supervisor is not None and snap.supervisor.state == "alive":
        c.print(snap.supervisor.text, markup=False, highlight=False)
    for notice in snap.notices:
        c.print(f"[bold red]![/] {notice}", markup=True, highlight=False)
    c.print(runs_table(snap, title=f"{exp.experiment}"))
    if snap.results is not None and not snap.results.empty:
        c.print("\n".join(results_lines(snap.results, width=c.width)), markup=False,
                highlight=False)
    return 0


def stop(exp_path: Path, run: str | None, wait: bool) -> int:
    """Ask the supervisor to stop every run (or one). With no supervisor, a temporary one
    (it never launches) adopts the live runs, stops them and exits."""
    exp = load_experiment(exp_path)
    from console.kinds import kind_for
    known = {j.key for j in kind_for(exp, launching=False).build_jobs()}
    if run is not None and run not in known:
        raise ConfigError(f"--run {run}: no such run in {exp_path}; runs are "
                          + ", ".join(sorted(known)))
    home = exp.layout.supervisor_home()
    action, args = ("stop", {"key": run, "final": True}) if run else ("stop_all",
                                                                       {"final": True})
    p = pr.presence(home)
    client = SupervisorClient(exp.source, home, kind="stop")
    if p.alive or pr.restart_due(p, pr.read_intent(home)):
        said = client.request(action, args)       # (re)starts it first when it is gone
    else:
        said = _with_temporary_supervisor(exp, home, action, args)
    print(said)
    if not wait:
        return 0
    grace = exp.watchdog.grace_period_s + 15
    deadline = time.monotonic() + grace
    while True:
        active = [r.key for r in client.poll().runs if r.state in ACTIVE_STATES
                  and (run is None or r.key == run)]
        if not active:
            print("stopped")
            return 0
        if time.monotonic() > deadline:
            print(f"still running after {grace:.0f}s: {', '.join(active)}", file=sys.stderr)
            return 1
        time.sleep(0.2)


def _with_temporary_supervisor(exp: Experiment, home: SupervisorHome, action: str,
                               args: dict) -> str:
    """The request is queued first, so the supervisor carries it out before its first tick."""
    try:
        rid = channel.send(home.requests, action, args,
                           client={"kind": "stop", "pid": None, "host": None})
    except OSError as e:
        raise UserError(f"cannot ask for the stop: writing to {home.requests} failed: "
                        f"{e.strerror or e}") from None
    try:
        attach.ensure(exp.source, home, explicit=True, by="stop", hold=True,
                      exit_when_idle=True)
    except attach.SupervisorFailed:
        # with no live run it answers, finds nothing to wait for and exits before its first
        # tick can be seen: its answer is what counts
        reply = channel.wait_reply(home.replies, rid, 0.0)
        if reply is None:
            raise
    else:
        reply = channel.wait_reply(home.replies, rid, 60.0)
    if reply is None:
        raise UserError(f"the temporary supervisor did not answer; see {home.log}")
    if not reply.ok:
        raise UserError(reply.error or "refused")
    return str(reply.value)
