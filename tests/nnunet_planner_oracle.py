"""Run nnunetv2's own ExperimentPlanner on a synthetic fingerprint (no dataset on disk)."""

from __future__ import annotations

import numpy as np


def nnunet_plans(fp: dict, planner: str = "ExperimentPlanner", gpu_gb: float | None = None) -> dict:
    """nnU-Net's configurations dict for `fp` (our fingerprint layout, (z, y, x) order)."""
    from nnunetv2.experiment_planning.experiment_planners import default_experiment_planner as d
    from nnunetv2.experiment_planning.experiment_planners.residual_unets import (
        residual_encoder_unet_planners as r)
    cls = {"ExperimentPlanner": d.ExperimentPlanner, "resenc_m": r.nnUNetPlannerResEncM,
           "resenc_l": r.nnUNetPlannerResEncL, "resenc_xl": r.nnUNetPlannerResEncXL}[planner]
    p = cls.__new__(cls)
    # __init__ reads dataset.json and the fingerprint from nnUNet_raw/nnUNet_preprocessed:
    # run it with those reads answered from memory
    mod = d
    saved = (mod.load_json, mod.isfile, mod.maybe_convert_to_dataset_name,
             mod.get_filenames_of_train_images_and_targets, mod.nnUNet_raw,
             mod.nnUNet_preprocessed)
    dataset_json = {"channel_names": {str(i): n for i, n in enumerate(fp["channel_names"])},
                    "labels": fp["labels"], "numTraining": len(fp["spacings"]),
                    "file_ending": ".nii.gz"}
    nn_fp = {"spacings": fp["spacings"], "shapes_after_crop": fp["shapes_after_crop"],
             "median_relative_size_after_cropping": 1.0,
             "foreground_intensity_properties_per_channel": {}}
    try:
        mod.nnUNet_raw = mod.nnUNet_preprocessed = "/nonexistent"
        mod.maybe_convert_to_dataset_name = lambda x: "Dataset999_Oracle"
        mod.get_filenames_of_train_images_and_targets = lambda *a: {}
        mod.isfile = lambda path: path.endswith("dataset_fingerprint.json")
        mod.load_json = lambda path: nn_fp if path.endswith("fingerprint.json") else dataset_json
        cls.__init__(p, "Dataset999_Oracle", *([gpu_gb] if gpu_gb else []))
        p.suppress_transpose = True      # our fingerprints already put the coarse axis first
        p.save_plans = lambda plans: None
        p.determine_reader_writer = lambda: type("RW", (), {})
        import contextlib
        import io
        import shutil
        copy, shutil.copy = shutil.copy, lambda *a, **k: None
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return p.plan_experiment()["configurations"]
        finally:
            shutil.copy = copy
    finally:
        (mod.load_json, mod.isfile, mod.maybe_convert_to_dataset_name,
         mod.get_filenames_of_train_images_and_targets, mod.nnUNet_raw,
         mod.nnUNet_preprocessed) = saved


def synthetic_fingerprint(median_shape, spacing, n: int = 20, seed: int = 0,
                          labels: int = 3, channels=("CT",)) -> dict:
    """A fingerprint of `n` cases whose shapes and spacings scatter around the given medians."""
    rng = np.random.default_rng(seed)
    shapes = [[max(4, int(round(s * f))) for s, f in zip(median_shape, rng.uniform(0.8, 1.2, 3))]
              for _ in range(n)]
    spacings = [[float(s * f) for s, f in zip(spacing, rng.uniform(0.9, 1.1, 3))] for _ in range(n)]
    names = ["background"] + [f"class{i}" for i in range(1, labels)]
    return {"case_ids": [f"c{i:03d}" for i in range(n)], "channel_names": list(channels),
            "labels": {k: i for i, k in enumerate(names)}, "spacings": spacings,
            "shapes_after_crop": shapes,
            "foreground_intensity": {str(c): {"name": ch, "mean": 0.0, "std": 1.0, "median": 0.0,
                                              "min": -1.0, "max": 1.0, "percentile_00_5": -1.0,
                                              "percentile_99_5": 1.0}
                                     for c, ch in enumerate(channels)}}
