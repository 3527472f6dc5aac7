"""`python -m console.supervisor EXP [--runs C/K,...] [--hold] [--exit-when-idle]`: the
detached supervisor that `foldwatch up` starts (console.protocol.attach)."""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m console.supervisor")
    p.add_argument("experiment")
    p.add_argument("--runs", default=None)
    p.add_argument("--hold", action="store_true", help="never launch (foldwatch stop)")
    p.add_argument("--exit-when-idle", action="store_true")
    p.add_argument("--chaos", type=float, default=None)
    args = p.parse_args(argv)
    from console.supervisor.service import Supervisor
    from contracts.errors import UserError
    runs = [r.strip() for r in args.runs.split(",") if r.strip()] if args.runs else None
    try:
        return Supervisor(args.experiment, runs=runs, hold=args.hold,
                          exit_when_idle=args.exit_when_idle, chaos=args.chaos).run()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
