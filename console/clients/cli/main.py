"""`foldwatch`: up, status, stop, demo. Imports nothing heavy at the top so --help is instant."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="foldwatch",
        description="Run, watch and finish nnU-Net-style cross-validation from one console.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="run an experiment (console, or --headless)")
    up.add_argument("experiment", type=Path, help="experiment YAML file")
    up.add_argument("--headless", action="store_true", help="no UI: lines and summary tables")
    up.add_argument("--read-only", action="store_true",
                    help="watch an experiment another console controls; change nothing")
    up.add_argument("--stop-on-exit", action="store_true",
                    help="stop the runs when quitting (default: they keep running)")
    up.add_argument("--mouse", action="store_true", help="enable the mouse in the console")
    up.add_argument("--chaos", type=float, metavar="SECONDS", default=None,
                    help="SIGKILL a random running fold about every SECONDS (watchdog demo)")
    up.add_argument("--runs", metavar="C/K,...", default=None,
                    help="team split: claim only these folds (e.g. 3d_lowres/0,3d_lowres/1) "
                         "of an experiment other consoles share; see docs/slurm.md")
    st = sub.add_parser("status", help="the runs table (works while another console runs)")
    st.add_argument("experiment", type=Path)
    st.add_argument("--json", action="store_true", help="machine-readable snapshot")
    sp = sub.add_parser("stop", help="stop the runs of an experiment (or one with --run)")
    sp.add_argument("experiment", type=Path)
    sp.add_argument("--run", metavar="C/K", help="one run, e.g. 3d_fullres/0 or find-best")
    sp.add_argument("--no-wait", action="store_true", help="do not wait for the runs to end")
    pl = sub.add_parser("plot", help="progress.png of every fold and the folds' overlay figure")
    pl.add_argument("experiment", type=Path)
    ex = sub.add_parser("export", help="write the TensorBoard / W&B (offline) exports now")
    ex.add_argument("experiment", type=Path)
    dm = sub.add_parser("demo", help="generate the demo dataset (if absent) and run it")
    dm.add_argument("directory", nargs="?", type=Path, default=Path("demo-run"))
    dm.add_argument("--headless", action="store_true")
    dm.add_argument("--chaos", action="store_true", help="kill a random run now and then")
    dm.add_argument("--mouse", action="store_true")
    return p


def _load(path: Path):
    from contracts.experiment import load_experiment
    return load_experiment(path)


def _up(exp_path: Path, *, headless: bool, read_only: bool, stop_on_exit: bool, mouse: bool,
        chaos: float | None, title: str | None = None, runs: str | None = None) -> int:
    from console.engine.core import Engine
    from contracts.errors import ConfigError
    exp = _load(exp_path)
    if not read_only:
        from console.bridges.notify_urls import check_urls
        check_urls(exp)                    # a URL Apprise cannot use: refused before anything
    claimed = None
    if runs is not None:
        if read_only:
            raise ConfigError("--runs claims runs to train; it cannot go with --read-only")
        claimed = [r.strip() for r in runs.split(",") if r.strip()]
    engine = Engine(exp, read_only=read_only, chaos_every_s=chaos, runs=claimed)
    from console.bridges.hub import Bridges
    bridges = Bridges(exp, active=not read_only,       # exporter subprocess, notifications
                      console_dir=getattr(engine, "state_path", exp.layout.state).parent)
    try:
        if headless:
            from console.clients.headless import run_headless
            return run_headless(engine, stop_on_exit=stop_on_exit)
        return _app(engine, exp, title=title, mouse=mouse, stop_on_exit=stop_on_exit,
                    read_only=read_only)
    finally:
        bridges.close()


def _app(engine, exp, *, title, mouse, stop_on_exit, read_only) -> int:
    from console.clients.tui.app import run_app
    try:
        return int(run_app(engine, title=title or f"foldwatch - {exp.experiment}", mouse=mouse)
                   or 0)
    finally:
        if stop_on_exit and not read_only:
            engine.stop_all(final=False)      # `foldwatch up` again continues them
            deadline = time.monotonic() + exp.watchdog.grace_period_s + 10
            while any(r.pid or r.job for r in engine.poll().runs) and time.monotonic() < deadline:
                time.sleep(0.2)
        engine.close()


def _status(exp_path: Path, as_json: bool) -> int:
    from console.engine.core import Engine
    from console.engine.results import ResultsReader, enrich, results_lines
    from console.clients.text import gpu_lines, runs_table, snapshot_json
    exp = _load(exp_path)
    engine = Engine(exp, read_only=True)
    try:
        time.sleep(0.1)                 # give the sampler a moment for the GPU line
        snap = engine.poll()
    finally:
        engine.close()
    if snap.results is None:
        enrich(snap, ResultsReader(exp.layout, list(exp.configurations)))
    if as_json:
        from contracts.jsonio import dumps
        print(dumps(snapshot_json(snap), indent=2))
        return 0
    from rich.console import Console
    c = Console(width=None if sys.stdout.isatty() else 160)
    for line in gpu_lines(snap):
        c.print(line)
    for notice in snap.notices:
        c.print(f"[bold red]![/] {notice}", markup=True, highlight=False)
    c.print(runs_table(snap, title=f"{exp.experiment}"))
    if snap.results is not None and not snap.results.empty:
        c.print("\n".join(results_lines(snap.results)), markup=False, highlight=False)
    return 0


def _stop(exp_path: Path, run: str | None, wait: bool) -> int:
    from console.engine.core import Engine
    from console.kinds import kind_for
    from console.store.locks import ConsoleLock
    from console.protocol.model import ACTIVE_STATES
    from console.store.statefile import load_state
    from console.engine.request_channel import send_request
    from contracts.errors import ConfigError
    exp = _load(exp_path)
    lay = exp.layout
    known = {j.key for j in kind_for(exp, launching=False).build_jobs()}
    if run is not None and run not in known:
        raise ConfigError(f"--run {run}: no such run in {exp_path}; runs are "
                          + ", ".join(sorted(known)))
    deadline = time.monotonic() + exp.watchdog.grace_period_s + 15
    if ConsoleLock(lay.lock).is_held_elsewhere():
        send_request(lay, "stop" if run else "stop_all", run)
        print(f"asked the controlling console to stop {run or 'every run'}")
        if not wait:
            return 0
        while time.monotonic() < deadline:
            runs = load_state(lay.state).data["runs"]
            active = [k for k, r in runs.items() if (run is None or k == run)
                      and r.get("state") in ACTIVE_STATES]
            if not active:
                print("stopped")
                return 0
            time.sleep(0.3)
        print(f"still running after {exp.watchdog.grace_period_s + 15:.0f}s: {', '.join(active)}",
              file=sys.stderr)
        return 1
    engine = Engine(exp, hold=True, autostart=False)   # no console: take control, adopt live runs, stop them
    try:
        engine.poll()
        if run:
            engine.stop(run)
        else:
            engine.stop_all()
        while True:
            snap = engine.poll()
            active = [r.key for r in snap.runs
                      if (r.pid or r.job) and (run is None or r.key == run)]
            if not active or not wait:
                break
            if time.monotonic() > deadline:
                print(f"still running: {', '.join(active)}", file=sys.stderr)
                return 1
            time.sleep(0.2)
    finally:
        engine.close()
    print(f"stopped {run or 'every run'}")
    return 0


def _plot(exp_path: Path) -> int:
    """Drawn by the trainer side in a subprocess: matplotlib stays out of the console."""
    import subprocess
    _load(exp_path)                       # a clear error for a bad file before spawning
    return subprocess.call([sys.executable, "-m", "trainer", "plot", "--experiment",
                            str(exp_path)])


def _export(exp_path: Path) -> int:
    """The exporter once, in a subprocess (tensorboardX/wandb stay out of this process)."""
    import subprocess
    _load(exp_path)
    return subprocess.call([sys.executable, "-m", "console.bridges.exporters", str(exp_path), "--once"])


def _demo(directory: Path, headless: bool, chaos: bool, mouse: bool) -> int:
    from console.clients.cli.demo import prepare_demo
    exp_path = prepare_demo(directory)
    return _up(exp_path, headless=headless, read_only=False, stop_on_exit=False, mouse=mouse,
               chaos=45.0 if chaos else None, title="foldwatch demo")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from contracts.errors import UserError
    try:
        if args.command == "up":
            return _up(args.experiment, headless=args.headless, read_only=args.read_only,
                       stop_on_exit=args.stop_on_exit, mouse=args.mouse, chaos=args.chaos,
                       runs=args.runs)
        if args.command == "status":
            return _status(args.experiment, args.json)
        if args.command == "stop":
            return _stop(args.experiment, args.run, not args.no_wait)
        if args.command == "export":
            return _export(args.experiment)
        if args.command == "plot":
            return _plot(args.experiment)
        if args.command == "demo":
            return _demo(args.directory, args.headless, args.chaos, args.mouse)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return 2

