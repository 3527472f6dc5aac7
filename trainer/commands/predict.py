"""`python -m trainer predict --experiment F [-i DIR -o DIR]`."""

from __future__ import annotations

from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--experiment", required=True, type=Path)
    p.add_argument("-i", "--input", type=Path, help="folder of CASE_0000.nii.gz images "
                   "(default: the experiment's test_images or the dataset's imagesTs)")
    p.add_argument("-o", "--output", type=Path, help="output folder (default: results/<exp>/predictions)")
    p.add_argument("--save-probabilities", action="store_true", help="also write <case>.npz")
    p.add_argument("--overwrite", action="store_true", help="redo cases already predicted")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")


def run(args) -> int:
    from contracts.experiment import load_experiment
    from contracts.layout import PREDICT

    import torch

    from trainer.runtime.device import cpu_threads
    from trainer.inference.prediction import predict_folder
    from trainer.runtime.runlog import RunLog

    exp = load_experiment(args.experiment)
    torch.set_num_threads(cpu_threads())
    with RunLog(exp.layout.stage_dir(PREDICT), stage=PREDICT) as log:
        r = predict_folder(exp, args.input, args.output, save_probabilities=args.save_probabilities,
                           overwrite=args.overwrite, device=args.device, log=log)
        if r["output"] is None:
            return 0
        line = f"{r['predicted']} predicted, {r['kept']} kept -> {r['output']}"
        if "foreground_mean_dice" in r:
            line += f"; test-set foreground mean Dice {r['foreground_mean_dice']:.4f}"
        print(line)
    return log.exit_code
