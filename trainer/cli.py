"""`python -m trainer <command>`: dispatch to one module per command.

Each command module defines `add_arguments(parser)` and `run(args) -> int`. Only the chosen
command's module is imported, so `--help` and light commands never pay for torch.
User mistakes (contracts.errors.UserError) print as one clear message and exit 2 or 3.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from contracts.errors import UserError
from contracts.runlock import lock_early

# command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "make-demo-data": ("trainer.commands.make_demo_data", "write the synthetic CT demo dataset"),
    "check-dataset": ("trainer.commands.check_dataset", "report every problem in a dataset"),
    "plan": ("trainer.commands.plan", "fingerprint, plans and splits for an experiment"),
    "preprocess": ("trainer.commands.preprocess", "resample, crop, normalise and cache cases"),
    "train": ("trainer.commands.train", "train one cross-validation fold"),
    "crossval": ("trainer.commands.crossval", "gather a configuration's fold validations"),
    "find-best": ("trainer.commands.find_best", "best configuration/ensemble + postprocessing"),
    "predict": ("trainer.commands.predict", "predict a folder of images with the chosen model"),
    "evaluate": ("trainer.commands.evaluate", "compare two folders of segmentations"),
    "probe-memory": ("trainer.commands.probe_memory",
                     "peak memory and step time of candidate settings vs a budget"),
    "plot": ("trainer.commands.plot", "progress.png per fold and the folds' overlay, from the logs"),
}


# Commands the supervisor starts for a run folder (a fold, or a pipeline stage)
RUN_COMMANDS = frozenset({"plan", "preprocess", "train", "crossval", "find-best", "predict"})


def _overview() -> str:
    width = max(len(c) for c in COMMANDS)
    rows = "\n".join(f"  {c.ljust(width)}  {h}" for c, (_, h) in COMMANDS.items())
    return ("usage: python -m trainer <command> [options]\n\ncommands:\n" + rows +
            "\n\n`python -m trainer <command> --help` for a command's options.")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_overview())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"trainer: unknown command {name!r}\n\n{_overview()}", file=sys.stderr)
        return 2
    module_name, help_text = COMMANDS[name]
    if name in RUN_COMMANDS and "-h" not in rest and "--help" not in rest:
        try:       # started by a supervisor: its run folder is locked before torch loads
            lock_early(role=name)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return e.exit_code
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"python -m trainer {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(rest)  # argparse exits 2 on usage errors, as the contract says
    try:
        return int(module.run(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
