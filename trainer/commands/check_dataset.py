"""`python -m trainer check-dataset DATASET`: report every problem, exit 3 if there is one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path,
                        help="nnU-Net v2 raw folder (with dataset.json) or MSD/MONAI datalist .json")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: up to 4)")


def run(args: argparse.Namespace) -> int:
    from contracts import exitcodes
    from trainer.data.checks import check_dataset
    from trainer.data.datasets import load_dataset
    from trainer.runtime.workers import default_workers

    info = load_dataset(args.dataset)
    problems = check_dataset(info, args.workers or default_workers())
    if problems:
        print(f"{args.dataset}: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return exitcodes.DATASET
    print(f"OK: {args.dataset}: {len(info.cases)} training case(s), {len(info.test_cases)} test "
          f"case(s), {len(info.channel_names)} channel(s) ({', '.join(info.channel_names)}), "
          f"labels {info.labels}")
    return 0
