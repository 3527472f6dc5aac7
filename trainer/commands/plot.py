"""`python -m trainer plot`: progress.png of every fold and each configuration's fold overlay."""

from __future__ import annotations

import argparse

from contracts.experiment import load_experiment


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiment", required=True, help="experiment YAML file")


def run(args: argparse.Namespace) -> int:
    exp = load_experiment(args.experiment)
    from trainer.reporting.progress_plot import plot_experiment
    written = plot_experiment(exp)
    if not written:
        print(f"{exp.layout.root}: no fold has finished an epoch yet; nothing to plot")
    for path in written:
        print(path)
    return 0
