"""`trainer: nnunetv2`'s results, where nnU-Net v2 (checked in 2.8.1) writes them.

In `$nnUNet_results/DatasetXXX_Name/`:
- `<trainer>__<plans>__<cfg>/crossval_results_folds_<f>_<g>.../summary.json`: each
  configuration's cross-validation (nnUNetv2_find_best_configuration accumulates the folds'
  validation there; `<f>_<g>...` are the folds as passed to it),
- `ensembles/ensemble___<model 1>___<model 2>___<folds>/summary.json`: each pair,
- `inference_information.json`: every candidate's Dice (`all_results`) and the winner
  (`best_model_or_ensemble`: `selected_model_or_models`, `result_on_crossval_pre_pp` /
  `_post_pp`, `postprocessing_file`), and `inference_instructions.txt`,
- `postprocessing.pkl` + `postprocessing.json` beside the winner's summary: the functions
  kept and the Dice before and after (`input_folder` / `postprocessed`).
foldwatch's own folder holds the test set: `nnunet_predictions/<cfg>/fold_<k>/` and
`nnunet_predictions/ensemble/` (console/kinds/nnunet_predict.py), `predictions/` (after
postprocessing) and `predictions/summary.json` (the evaluate-test stage: nnU-Net's
nnUNetv2_evaluate_folder against the dataset's labelsTs). Nothing here imports nnU-Net.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

from console.kinds.nnunet_predict import EVALUATE_TEST, PREV_ENSEMBLE, NnunetPrediction
from console.kinds.results import (StageResult, SummaryFiles, chosen_model, find_best_result,
                                   label_names)
from console.protocol.fmt import num
from console.protocol.model import ResultsView
from contracts.layout import summary_key

LARGEST = "remove_all_but_largest_component_from_segmentation"   # nnU-Net's function name
_PREDICT_KEY = re.compile(r"^predict-(.+)-fold(\d+)$")


def model_of(identifier: str) -> str:
    """`nnUNetTrainer__nnUNetPlans__3d_fullres` -> `3d_fullres` (nnU-Net's
    convert_identifier_to_trainer_plans_config)."""
    return identifier.split("__")[-1]


def ensemble_members(key: str) -> list[str] | None:
    """`ensemble___<id 1>___<id 2>___0_1_2_3_4` -> the two configurations."""
    parts = key.split("___")
    if len(parts) < 4 or parts[0] != "ensemble":
        return None
    return [model_of(p) for p in parts[1:-1]]


def postprocessing_words(post: dict, names: dict[str, str], regions: bool) -> str:
    """nnU-Net's postprocessing.json (`postprocessing_fns`, `postprocessing_kwargs`) in words.

    determine_postprocessing first tries all foreground at once (`labels_or_regions`: every
    foreground label, or every region: a list of lists), then each label (an int) or region
    (a list of labels) alone; what it keeps is listed in order."""
    fns = post.get("postprocessing_fns") or []
    kwargs = post.get("postprocessing_kwargs") or []
    parts: list[str] = []
    each: list[str] = []
    for fn, kw in zip(fns, kwargs):
        value = (kw or {}).get("labels_or_regions") if isinstance(kw, dict) else None
        if fn != LARGEST:
            parts.append(str(fn))
        elif isinstance(value, list) and (not regions or all(isinstance(v, list) for v in value)):
            parts.append("largest component of all foreground")
        elif value is not None:
            key = summary_key(value if isinstance(value, list) or not regions else [value])
            each.append(names.get(key, f"{'region' if regions else 'class'} {key}"))
    if each:
        parts.append("largest component of " + ", ".join(each))
    return " + ".join(parts) if parts else "none: it would not raise the Dice"


class NnunetResults:
    """The Results view and stage results of an nnunetv2 experiment."""

    def __init__(self, kind: NnunetPrediction) -> None:
        self.kind = kind
        self.exp = kind.exp
        self.files = SummaryFiles()
        self._found: dict[str, Path] = {}

    # -- where ---------------------------------------------------------------------------------
    def _dataset(self, root: str) -> Path | None:
        """nnU-Net's folder of the dataset under one of its roots, looked up until it exists."""
        if root not in self._found and root in self.kind.roots:
            hits = sorted(glob.glob(str(self.kind.roots[root] / self.kind.dataset_glob())))
            if hits:
                self._found[root] = Path(hits[0])
        return self._found.get(root)

    def dataset_json(self) -> dict:
        raw = self._dataset("raw")
        return (self.files.json(raw / "dataset.json") if raw else None) or {}

    @property
    def regions(self) -> bool:
        ds = self.dataset_json()
        labels = ds.get("labels") if isinstance(ds.get("labels"), dict) else {}
        return bool(ds.get("regions_class_order")) or any(
            isinstance(v, (list, tuple)) for v in labels.values())

    def file_ending(self) -> str:
        ending = self.dataset_json().get("file_ending")
        return ending if isinstance(ending, str) and ending else ".nii.gz"

    def model_dir(self, results: Path, cfg: str) -> Path:
        s = self.kind.s
        return results / f"{s.trainer.rpartition('.')[2]}__{s.plans}__{cfg}"

    def folds_string(self) -> str:
        return "_".join(str(k) for k in self.exp.folds)

    # -- the source ----------------------------------------------------------------------------
    def class_names(self) -> dict[str, str]:
        return label_names(self.dataset_json().get("labels"), regions=self.regions)

    def read(self) -> ResultsView:
        lay, files, names = self.exp.layout, self.files, self.class_names()
        rv = ResultsView(root=str(lay.root))
        results = self._dataset("results")
        if results is not None:
            folds = self.folds_string()
            for cfg in self.exp.configurations:
                path = self.model_dir(results, cfg) / f"crossval_results_folds_{folds}" / "summary.json"
                sv = files.score(cfg, path, names)
                if sv:
                    rv.configurations.append(sv)
            info_path = results / "inference_information.json"
            info = files.json(info_path)
            if info:
                self._choice(rv, info, info_path, results, names)
        n = files.count(lay.predictions, self.file_ending())
        if n:
            rv.predicted_cases, rv.predictions_dir = n, str(lay.predictions)
            rv.test = files.score("test set", lay.predictions / "summary.json", names)
        return rv

    def _choice(self, rv: ResultsView, info: dict, info_path: Path, results: Path,
                names: dict[str, str]) -> None:
        """find-best's ensembles, winner and postprocessing decision."""
        for key in info.get("all_results") or {}:
            members = ensemble_members(str(key))
            if members:
                sv = self.files.score("+".join(members), results / "ensembles" / str(key)
                                      / "summary.json", names)
                if sv:
                    rv.ensembles.append(sv)
        best = info.get("best_model_or_ensemble") or {}
        chosen = [m.get("configuration") for m in best.get("selected_model_or_models") or []
                  if isinstance(m, dict)]
        rv.chosen = [str(c) for c in chosen if c]
        rv.chosen_dice = best.get("result_on_crossval_pre_pp")
        rv.best_path = str(info_path)
        how = results / "inference_instructions.txt"
        rv.how_to_predict = str(how) if how.exists() else None
        pkl = best.get("postprocessing_file")
        post_path = Path(pkl).with_name("postprocessing.json") if isinstance(pkl, str) else None
        post = self.files.json(post_path)
        if post and post_path:
            words = postprocessing_words(post, names, self.regions)
            if self.exp.pipeline.predict_test and not self.exp.pipeline.postprocess:
                words += " (not applied to the test set: pipeline.postprocess is off)"
            rv.postprocessing = words
            rv.postprocessing_dice = (
                ((post.get("input_folder") or {}).get("foreground_mean") or {}).get("Dice"),
                ((post.get("postprocessed") or {}).get("foreground_mean") or {}).get("Dice"))
            rv.postprocessing_path = str(post_path)

    def stage_result(self, key: str, rv: ResultsView) -> StageResult | None:
        if key == "find-best":
            return find_best_result(rv)
        ending = self.file_ending()
        if m := _PREDICT_KEY.match(key):
            n = self.files.count(self.kind.prediction_dir(m.group(1), int(m.group(2))), ending)
            return StageResult(f"{n} cases predicted", cases=n) if n else None
        if key == PREV_ENSEMBLE:
            n = self.files.count(self.kind.prev_stage_dir, ending)
            return StageResult(f"{n} cases ensembled (the cascade's input)", cases=n) if n else None
        if key == "ensemble":
            n = self.files.count(self.kind.ensemble_dir, ending)
            return (StageResult(f"{n} cases ensembled", model=chosen_model(rv), cases=n)
                    if n else None)
        if key == "postprocess" and rv.postprocessing and rv.predicted_cases:
            before, after = rv.postprocessing_dice or (None, None)
            return StageResult(f"{rv.postprocessing} on {rv.predicted_cases} cases "
                               f"(cross-validation fg Dice {num(before)} -> {num(after)})",
                               dice=after, model=chosen_model(rv), cases=rv.predicted_cases)
        if key == EVALUATE_TEST and rv.test:
            classes = ", ".join(f"{k} {num(v)}" for k, v in rv.test.per_class.items())
            return StageResult(f"test fg Dice {num(rv.test.foreground_dice)} on {rv.test.cases} "
                               "cases" + (f" ({classes})" if classes else ""),
                               dice=rv.test.foreground_dice, model=chosen_model(rv),
                               cases=rv.test.cases)
        return None
