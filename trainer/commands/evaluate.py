"""`python -m trainer evaluate --pred DIR --ref DIR [-o FILE]`."""

from __future__ import annotations

import sys
from pathlib import Path

from contracts.errors import ConfigError
from contracts.jsonio import atomic_write_json


def add_arguments(p) -> None:
    p.add_argument("--pred", required=True, type=Path, help="folder of predicted label maps")
    p.add_argument("--ref", required=True, type=Path, help="folder of reference label maps")
    p.add_argument("-o", "--output", type=Path, help="summary file (default: PRED/summary.json)")
    p.add_argument("--labels", help="comma-separated label values to score (default: all "
                   "non-zero values found in the references)")
    p.add_argument("--file-ending", default=".nii.gz")


def run(args) -> int:
    from trainer.evaluation.compare import evaluate_folders
    labels = None
    if args.labels:
        try:
            labels = [int(v) for v in args.labels.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--labels {args.labels!r}: expected comma-separated integers, "
                              "e.g. --labels 1,2") from None
    summary = evaluate_folders(args.pred, args.ref, labels, args.file_ending)
    out = args.output or args.pred / "summary.json"
    atomic_write_json(out, summary)
    n = len(summary["metric_per_case"])
    print(f"{n} cases, foreground mean Dice {summary['foreground_mean']['Dice']:.4f} -> {out}")
    for c, m in summary["mean"].items():
        print(f"  label {c}: Dice {m['Dice']:.4f}  IoU {m['IoU']:.4f}")
    for key, what in (("missing_predictions", "references without a prediction"),
                      ("extra_predictions", "predictions without a reference")):
        if summary[key]:
            shown = ", ".join(summary[key][:10]) + (" ..." if len(summary[key]) > 10 else "")
            print(f"warning: {len(summary[key])} {what} (not scored): {shown}", file=sys.stderr)
    return 0
