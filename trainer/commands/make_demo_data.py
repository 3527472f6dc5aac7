"""`python -m trainer make-demo-data OUT`: write the synthetic CT demo dataset into OUT."""

from __future__ import annotations

import argparse
from pathlib import Path

from contracts.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path,
                        help="the dataset folder to create, e.g. data/Dataset900_Demo")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same dataset (default 0)")
    parser.add_argument("--train", type=int, default=24, help="training cases (default 24)")
    parser.add_argument("--test", type=int, default=6, help="test cases, labels kept in labelsTs (default 6)")
    parser.add_argument("--force", action="store_true",
                        help="write into OUT even if it already holds files")


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if args.train < 1 or args.test < 0:
        raise ConfigError("--train must be at least 1 and --test at least 0")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise ConfigError(f"{out}: folder is not empty; choose a new folder or pass --force "
                          "to write the demo files into it")
    from trainer.data.demo_data import write_demo_dataset
    write_demo_dataset(out, seed=args.seed, n_train=args.train, n_test=args.test)
    print(f"demo dataset: {out} ({args.train} training, {args.test} test cases, seed {args.seed})")
    return 0
