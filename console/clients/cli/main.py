"""`foldwatch`: the command line. Imports nothing heavy at the top so --help is instant; each
command imports what it needs (console.clients.cli.supervise, .inspect)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _runs_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--runs", metavar="C/K,...", default=None,
                   help=f"team split: {what} (e.g. 3d_lowres/0,3d_lowres/1); see docs/slurm.md")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="foldwatch",
        description="Run, watch and finish nnU-Net-style cross-validation. One supervisor "
                    "per experiment supervises in the background; every command is a view "
                    "of it.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="supervise an experiment (starting its supervisor if none "
                                   "runs) and open the console, or --headless")
    up.add_argument("experiment", type=Path, help="experiment YAML file")
    up.add_argument("--headless", action="store_true",
                    help="no UI: the supervisor in the foreground, printing lines (or, when "
                         "one runs already, follow it); exit 0 when every run completed")
    up.add_argument("--read-only", action="store_true",
                    help="a view that cannot act (to watch, or to share)")
    up.add_argument("--stop-on-exit", action="store_true",
                    help="stop the runs when this window closes (default: they keep going)")
    up.add_argument("--mouse", action="store_true", help="enable the mouse in the console")
    up.add_argument("--chaos", type=float, metavar="SECONDS", default=None,
                    help="SIGKILL a random running fold about every SECONDS (watchdog demo)")
    up.add_argument("--here", action="store_true",
                    help="supervise from this machine although its last supervisor ran on "
                         "another host of a shared results folder (queued runs train here)")
    _runs_option(up, "supervise only these folds of an experiment others share")
    dn = sub.add_parser("down", help="end supervision; the runs keep training (the next "
                                     "`foldwatch up` adopts them)")
    dn.add_argument("experiment", type=Path)
    _runs_option(dn, "the supervisor of these folds")
    ls = sub.add_parser("ls", help="experiments supervised on this host")
    ls.add_argument("--json", action="store_true")
    st = sub.add_parser("status", help="the runs table, from the supervisor (any shell)")
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
    sv = sub.add_parser("serve", help="the console in a web browser (token in the URL; "
                                      "127.0.0.1 unless --host)")
    sv.add_argument("experiment", type=Path)
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1: reach it with ssh -L)")
    sv.add_argument("--port", type=int, default=8000, help="default 8000; 0: any free port")
    sv.add_argument("--read-only", action="store_true",
                    help="a view that cannot act, to share with others")
    sv.add_argument("--max-tabs", type=_positive, default=8, metavar="N",
                    help="browser tabs (console processes) open at once; more are refused "
                         "(default 8)")
    pk = sub.add_parser("pack", help="completed folds into one archive, to import on a "
                                     "machine that shares no disk with this one")
    pk.add_argument("experiment", type=Path)
    pk.add_argument("--runs", metavar="C/K,...", required=True,
                    help="the folds to pack, e.g. 3d_fullres/2,3d_fullres/3")
    pk.add_argument("-o", "--output", type=Path, default=None,
                    help="archive file or folder (default: EXP-RUNS-HOST.tar here)")
    pk.add_argument("--all-checkpoints", action="store_true",
                    help="every checkpoint, not only the final and best ones")
    im = sub.add_parser("import", help="folds packed elsewhere (or nnU-Net fold folders and "
                                       "export zips) into this experiment, after checking them")
    im.add_argument("experiment", type=Path)
    im.add_argument("files", type=Path, nargs="+", metavar="FILE",
                    help="`foldwatch pack` archives; with trainer: nnunetv2 also nnU-Net fold "
                         "folders and nnUNetv2_export_model_to_zip zips")
    im.add_argument("--replace", action="store_true",
                    help="replace folds that exist here (moved aside as fold_<k>.old-<time>)")
    im.add_argument("--runs", metavar="C/K,...", default=None,
                    help="import only these folds of the archives")
    return p


def _plot(exp_path: Path) -> int:
    """Drawn by the trainer side in a subprocess: matplotlib stays out of the console."""
    import subprocess
    from contracts.experiment import load_experiment
    load_experiment(exp_path)             # a clear error for a bad file before spawning
    return subprocess.call([sys.executable, "-m", "trainer", "plot", "--experiment",
                            str(exp_path)])


def _export(exp_path: Path) -> int:
    """The exporter once, in a subprocess (tensorboardX/wandb stay out of this process)."""
    import subprocess
    from contracts.experiment import load_experiment
    load_experiment(exp_path)
    return subprocess.call([sys.executable, "-m", "console.bridges.exporters", str(exp_path),
                            "--once"])


def _demo(directory: Path, headless: bool, chaos: bool, mouse: bool) -> int:
    from console.clients.cli.demo import prepare_demo
    from console.clients.cli.supervise import up
    exp_path = prepare_demo(directory)
    return up(exp_path, headless=headless, read_only=False, stop_on_exit=False, mouse=mouse,
              chaos=45.0 if chaos else None, title="foldwatch demo")


def _dispatch(args) -> int:
    if args.command in ("up", "down", "ls"):
        from console.clients.cli import supervise
        if args.command == "up":
            return supervise.up(args.experiment, headless=args.headless,
                                read_only=args.read_only, stop_on_exit=args.stop_on_exit,
                                mouse=args.mouse, chaos=args.chaos, runs=args.runs,
                                here=args.here)
        if args.command == "down":
            return supervise.down(args.experiment, runs=args.runs)
        return supervise.ls(args.json)
    if args.command in ("status", "stop"):
        from console.clients.cli import inspect
        if args.command == "status":
            return inspect.status(args.experiment, args.json)
        return inspect.stop(args.experiment, args.run, not args.no_wait)
    if args.command in ("pack", "import"):
        from console.clients.cli import transfer
        if args.command == "pack":
            return transfer.pack(args.experiment, args.runs, args.output, args.all_checkpoints)
        return transfer.import_(args.experiment, args.files, args.replace, args.runs)
    if args.command == "export":
        return _export(args.experiment)
    if args.command == "plot":
        return _plot(args.experiment)
    if args.command == "demo":
        return _demo(args.directory, args.headless, args.chaos, args.mouse)
    if args.command == "serve":
        return _serve(args)
    return 2


def _serve(args) -> int:
    """Validates the experiment here, so a bad file is an error now, not in every tab."""
    from contracts.experiment import load_experiment
    exp = load_experiment(args.experiment)
    from console.clients.web.server import serve
    return serve(args.experiment.resolve(), title=f"foldwatch - {exp.experiment}",
                 host=args.host, port=args.port, read_only=args.read_only,
                 max_tabs=args.max_tabs)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from contracts.errors import UserError
    try:
        return _dispatch(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
