"""The configuration family: which of 2d, 3d_fullres, 3d_lowres and 3d_cascade_fullres exist.

3d_lowres follows nnU-Net's ExperimentPlanner.plan_experiment (nnunetv2 2.x): it exists only
when the 3d_fullres patch holds less than 25 % of the median image's voxels
(`lowres_creation_threshold`). Its spacing then grows in steps of 1.03, first only along the
axes more than 2x finer than the coarsest one (anisotropy-aware), until the lowres patch
covers 25 % of the lowres median image; it is dropped when the lowres median image is less
than half the fullres one. 3d_cascade_fullres inherits 3d_fullres' spacing and topology and
takes 3d_lowres' prediction as extra one-hot input channels.
"""

from __future__ import annotations

import numpy as np

from contracts.errors import ConfigError
from contracts.experiment import CASCADE, LOWRES, Configuration

from trainer.planning.planner import plan_configuration, target_spacing
from trainer.planning.plans import Plan

LOWRES_CREATION_THRESHOLD = 0.25      # nnU-Net: fullres patch / median image voxels
SPACING_INCREASE_FACTOR = 1.03        # nnU-Net: "used to be 1.01 but that is slow"
MAX_LOWRES_STEPS = 2000               # 1.03^2000 ~ 1e25: a guard, never reached in practice


def _fullres_median(fp: dict, spacing: list[float]) -> np.ndarray:
    shapes = np.asarray(fp["shapes_after_crop"], float)
    spacings = np.asarray(fp["spacings"], float)
    return np.median(np.rint(spacings / np.asarray(spacing) * shapes), 0)


def lowres_plan(cfg: Configuration, fp: dict, fullres: Plan, file_ending: str = ".nii.gz"
                ) -> tuple[Plan | None, dict]:
    """(3d_lowres plan or None, why) from the 3d_fullres plan, nnU-Net's loop."""
    full_spacing = np.asarray(fullres.spacing, float)
    median = _fullres_median(fp, fullres.spacing)
    median_voxels = float(np.prod(median, dtype=np.float64))
    patch_voxels = float(np.prod(fullres.patch_size, dtype=np.float64))
    coverage = patch_voxels / median_voxels
    why = {"fullres_patch_coverage": round(coverage, 4), "threshold": LOWRES_CREATION_THRESHOLD}
    if coverage >= LOWRES_CREATION_THRESHOLD:
        why["decision"] = "not needed: the 3d_fullres patch covers enough of the median image"
        return None, why
    spacing = full_spacing.copy()
    plan, steps = None, 0
    while patch_voxels / median_voxels < LOWRES_CREATION_THRESHOLD and steps < MAX_LOWRES_STEPS:
        coarse = spacing.max()
        fine = coarse / spacing > 2
        if fine.any():
            spacing[fine] *= SPACING_INCREASE_FACTOR
        else:
            spacing *= SPACING_INCREASE_FACTOR
        shape = full_spacing / spacing * median
        median_voxels = float(np.prod(shape, dtype=np.float64))
        plan = plan_configuration(LOWRES, cfg, fp, file_ending, spacing=spacing.tolist(),
                                  median_shape=[round(float(s)) for s in shape],
                                  notes={"spacing_source": "auto (nnU-Net lowres steps of 1.03)"})
        patch_voxels = float(np.prod(plan.patch_size, dtype=np.float64))
        steps += 1
    why.update(steps=steps, lowres_median_voxels=round(median_voxels))
    if float(np.prod(median, dtype=np.float64)) / median_voxels < 2:
        why["decision"] = ("dropped: the lowres image is less than half the size of the "
                           "fullres one")
        return None, why
    why["decision"] = "created"
    plan.extra["lowres"] = why
    plan.extra["next_stage"] = CASCADE
    return plan, why


def plan_family(configurations: dict[str, Configuration], fp: dict,
                file_ending: str = ".nii.gz") -> dict[str, Plan]:
    """Plans of the experiment's configurations; ConfigError where nnU-Net would not make one."""
    plans: dict[str, Plan] = {}
    for name in ("2d", "3d_fullres"):
        if name in configurations:
            plans[name] = plan_configuration(name, configurations[name], fp, file_ending)
    if LOWRES in configurations or CASCADE in configurations:
        # the lowres decision is taken on the 3d_fullres plan, as nnU-Net does
        full_cfg = configurations.get("3d_fullres") or configurations.get(CASCADE) or Configuration()
        fullres = plans.get("3d_fullres") or plan_configuration("3d_fullres", full_cfg, fp, file_ending)
        low_cfg = configurations.get(LOWRES, Configuration())
        if isinstance(low_cfg.spacing, list):           # the user's own lowres spacing wins
            plans[LOWRES] = plan_configuration(LOWRES, low_cfg, fp, file_ending)
            plans[LOWRES].extra["next_stage"] = CASCADE
        else:
            low, why = lowres_plan(low_cfg, fp, fullres, file_ending)
            if low is None:
                raise ConfigError(
                    f"configurations.{LOWRES}: nnU-Net would not create 3d_lowres for this "
                    f"dataset ({why['decision']}; the 3d_fullres patch {fullres.patch_size} "
                    f"covers {why['fullres_patch_coverage']:.0%} of the median image "
                    f"{[int(round(s)) for s in _fullres_median(fp, fullres.spacing)]}, the "
                    f"threshold is {LOWRES_CREATION_THRESHOLD:.0%}). Remove {LOWRES} and "
                    f"{CASCADE} from configurations, or give {LOWRES} an explicit spacing.")
            plans[LOWRES] = low
        if CASCADE in configurations:
            cascade = plan_configuration(CASCADE, configurations[CASCADE], fp, file_ending)
            cascade.previous_stage = LOWRES
            plans[CASCADE] = cascade
    return {name: plans[name] for name in configurations}


__all__ = ["lowres_plan", "plan_family", "target_spacing"]
