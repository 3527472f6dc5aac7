"""Compare two folders of label maps with nnU-Net's metrics (`python -m trainer evaluate`)."""

from __future__ import annotations

from pathlib import Path

from contracts.errors import DatasetError

from trainer.data.labelmaps import read_labels, same_geometry
from trainer.evaluation.metrics import case_metrics, summarize


def nifti_cases(folder: Path, file_ending: str = ".nii.gz") -> dict[str, Path]:
    """case id -> file, for every `<case><file_ending>` directly in `folder`."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder not found")
    return {p.name[:-len(file_ending)]: p for p in sorted(folder.iterdir())
            if p.name.endswith(file_ending) and not p.name.startswith(".")}


def evaluate_folders(pred_dir: Path, ref_dir: Path, labels: list[int] | None = None,
                     file_ending: str = ".nii.gz") -> dict:
    """Summary (nnU-Net shape) over the cases in both folders; missing/extra ones listed in it.

    Cases whose prediction and reference differ in shape or affine are errors (exit 3),
    all named at once: a metric over misaligned voxels would be meaningless.
    """
    preds, refs = nifti_cases(pred_dir, file_ending), nifti_cases(ref_dir, file_ending)
    common = sorted(set(preds) & set(refs))
    missing = sorted(set(refs) - set(preds))     # reference without prediction
    extra = sorted(set(preds) - set(refs))       # prediction without reference
    if not common:
        raise DatasetError(f"no case is in both {pred_dir} ({len(preds)} files) and {ref_dir} "
                           f"({len(refs)} files); case files must be named <case>{file_ending}")
    if labels is None:
        import numpy as np
        found: set[int] = set()
        for case in common:
            found |= set(int(v) for v in np.unique(read_labels(refs[case])[0]))
        labels = sorted(found - {0})
    per_case, problems = [], []
    for case in common:
        pred, pa = read_labels(preds[case])
        ref, ra = read_labels(refs[case])
        if not same_geometry(pred.shape, pa, ref.shape, ra):
            problems.append(f"{case}: prediction {preds[case]} has shape {pred.shape} and affine "
                            f"differing from reference {refs[case]} (shape {ref.shape}); predictions "
                            "must be on the reference's voxel grid")
            continue
        m = case_metrics(pred, ref, labels)
        m.update(case=case, prediction_file=str(preds[case]), reference_file=str(refs[case]))
        per_case.append(m)
    if problems:
        raise DatasetError(problems, header="geometry mismatches")
    summary = summarize(per_case, labels)
    summary["missing_predictions"] = missing
    summary["extra_predictions"] = extra
    return summary
