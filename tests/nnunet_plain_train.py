"""`nnUNetv2_train` itself (nnU-Net's own entry point and argument parsing), with a tiny trainer.

    python tests/nnunet_plain_train.py DATASET CONFIGURATION FOLD [nnUNetv2_train's options]

runs `nnunetv2.run.run_training.run_training_entry` exactly as the `nnUNetv2_train` command
does, with `-tr` resolved to `nnUNetTrainer_tiny` (1 epoch of 2 iterations, 1 validation
iteration) defined here. Only the class lookup is pointed at it: nnU-Net's own lookup imports
every variant module, and with a CPU build of torch one of them stops on "operator
torchvision::nms does not exist" (docs/trainers.md), so `-tr nnUNetTrainer_1epoch` cannot run
on the test machine. Everything the fold folder holds is written by nnU-Net's own code: a fold
trained by plain nnUNetv2_train, without foldwatch.
"""

from __future__ import annotations

import sys

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainer_tiny(nnUNetTrainer):       # noqa: N801  (nnU-Net's naming)
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1


def main() -> None:
    import nnunetv2.run.run_training as rt
    rt.recursive_find_trainer_class_by_name = (
        lambda name: nnUNetTrainer_tiny if name == "nnUNetTrainer_tiny" else None)
    sys.argv = ["nnUNetv2_train", *sys.argv[1:], "-tr", "nnUNetTrainer_tiny"]
    rt.run_training_entry()


if __name__ == "__main__":
    main()
