"""`foldwatch up`, `down` and `ls`: start, attach to and end an experiment's supervision."""

from __future__ import annotations

import time
from pathlib import Path

from console.protocol import attach
from console.protocol import presence as pr
from console.protocol.client import SupervisorClient
from contracts.errors import ConfigError, UserError
from contracts.experiment import Experiment, load_experiment
from contracts.layout import SupervisorHome


def claimed_runs(exp: Experiment, runs: str | None) -> list[str] | None:
    """--runs C/K,... checked against the experiment's folds (team split), or None."""
    if runs is None:
        return None
    from console.engine.team import check_runs
    return check_runs(exp, [r.strip() for r in runs.split(",") if r.strip()])


def home_of(exp: Experiment, runs: list[str] | None) -> SupervisorHome:
    from console.store.claims import console_id
    return exp.layout.supervisor_home(console_id(runs) if runs else None)


def up(exp_path: Path, *, headless: bool, read_only: bool, stop_on_exit: bool, mouse: bool,
       chaos: float | None, title: str | None = None, runs: str | None = None,
       here: bool = False) -> int:
    exp = load_experiment(exp_path)
    claimed = claimed_runs(exp, runs)
    if claimed and read_only:
        raise ConfigError("--runs says which folds this machine supervises; it cannot go "
                          "with --read-only (watch with `foldwatch status` or --read-only "
                          "alone)")
    if not read_only:                  # its settings must be able to launch: say so now
        from console.bridges.notify_urls import check_urls
        from console.kinds import kind_for
        kind_for(exp, launching=True)
        check_urls(exp)                # a URL Apprise cannot use: refused before anything
    home = home_of(exp, claimed)
    if headless:
        return _headless(exp, home, claimed, read_only=read_only, chaos=chaos,
                         stop_on_exit=stop_on_exit, here=here)
    if not read_only:
        attach.ensure(exp.source, home, explicit=True, by="up", runs=claimed, chaos=chaos,
                      here=here)
    client = SupervisorClient(exp.source, home, kind="tui", read_only=read_only, runs=claimed)
    from console.clients.tui.app import run_app
    return int(run_app(client, title=title or f"foldwatch - {exp.experiment}", mouse=mouse,
                       stop_on_exit=stop_on_exit) or 0)


def _headless(exp: Experiment, home: SupervisorHome, runs: list[str] | None, *,
              read_only: bool, chaos: float | None, stop_on_exit: bool, here: bool) -> int:
    """The supervisor in the foreground when none runs (a Slurm job script, systemd, CI);
    else follow the one that runs, with the same lines and exit code."""
    from console.clients.lines import LinePrinter, follow
    printer = LinePrinter()
    if not read_only and not (p := pr.presence(home)).alive:
        attach.check_host(exp.source, p, here=here)
        from console.supervisor.service import Supervisor
        from contracts import exitcodes
        attach.save_environment(home)
        pr.write_intent(home, True, "up --headless", "foldwatch up --headless")
        sup = Supervisor(exp, runs=runs, chaos=chaos, foreground=True, on_tick=printer.show,
                         stop_on_exit=stop_on_exit)
        code = sup.run()
        if code != exitcodes.BUSY:      # BUSY: another supervisor won the start: follow it
            if sup.finished_snapshot is not None:
                return printer.final(sup.finished_snapshot)
            return code
    client = SupervisorClient(exp.source, home, kind="headless", read_only=read_only,
                              runs=runs)
    return follow(client, printer, stop_on_exit=stop_on_exit,
                  grace_s=exp.watchdog.grace_period_s + 10)


def down(exp_path: Path, runs: str | None = None) -> int:
    """End supervision; the runs keep training, the next `foldwatch up` adopts them."""
    exp = load_experiment(exp_path)
    home = home_of(exp, claimed_runs(exp, runs))
    p = pr.presence(home)
    pr.write_intent(home, False, "down", f"foldwatch down by {pr._user()}")
    if not p.alive:
        print(f"{exp.experiment}: {pr.describe(p)}; it stays down")
        return 0
    client = SupervisorClient(exp.source, home, kind="down", restart=False)
    try:
        said = client.request("down", {"why": f"foldwatch down by {pr._user()}"})
    except UserError as e:
        print(f"error: {e}")
        return 1
    deadline = time.monotonic() + 30
    while pr.probe(home.lock) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"{exp.experiment}: {said}")
    return 0


def ls(as_json: bool) -> int:
    """The experiments supervised on this host; a supervisor that died while wanted is
    started again (as every command does)."""
    from console.clients.text import supervisors_table
    from console.protocol.snapshots import SnapshotReader
    from console.supervisor import registry
    rows = []
    for entry in registry.entries():
        home = SupervisorHome(Path(entry["home"]))
        p = pr.presence(home)
        if pr.restart_due(p, pr.read_intent(home)) and Path(entry.get("file", "")).exists():
            try:              # started again, not waited for: one slow start holds up no row
                p, _ = attach.ensure(Path(entry["file"]), home, explicit=False, by="ls",
                                     wait=False)
            except (UserError, OSError) as e:
                p.reason = str(e).splitlines()[0]
        if p.state == "never":
            continue
        snap = SnapshotReader(home.snapshot).read().snapshot
        counts: dict[str, int] = {}
        for r in snap.runs if snap else []:
            counts[r.state] = counts.get(r.state, 0) + 1
        rows.append({"experiment": entry.get("experiment"), "file": entry.get("file"),
                     "supervisor": p.state, "pid": p.pid if p.alive else None,
                     "uptime_s": time.time() - p.started if p.alive and p.started else None,
                     "running": sum(counts.get(s, 0) for s in ("starting", "running",
                                                               "stalled")),
                     "queued": sum(counts.get(s, 0) for s in ("queued", "backoff", "waiting")),
                     "failed": counts.get("failed", 0),
                     "completed": counts.get("completed", 0), "runs": len(snap.runs) if snap else 0,
                     "finished": bool(snap and snap.finished), "home": str(home.dir),
                     "note": None if p.alive else pr.describe(p, pr.read_intent(home))})
    if as_json:
        from contracts.jsonio import dumps
        print(dumps(rows, indent=2))
        return 0
    import sys
    from rich.console import Console
    Console(width=None if sys.stdout.isatty() else 160).print(supervisors_table(rows))
    return 0
