"""`trainer: nnunetv2`'s test-set stages: one nnUNetv2_predict per configuration and fold, the
cascade's first-stage ensemble, the final ensemble, postprocessing and, when the dataset has
test labels (labelsTs), nnU-Net's evaluation of the final predictions (docs/trainers.md).

With 3d_lowres and 3d_cascade_fullres in the experiment the graph is
predict-3d_lowres-fold<k> -> ensemble-3d_lowres (segmentations) ->
predict-3d_cascade_fullres-fold<k> (-prev_stage_predictions) -> ensemble -> postprocess
-> evaluate-test.
Every stage decides when it launches, from find-best's inference_information.json, whether it
runs or completes at once with the reason. Nothing here imports nnU-Net.
"""

from __future__ import annotations

import glob
import json
import shutil
import sys
from pathlib import Path

from console.kinds.jobs import Job
from contracts.experiment import CASCADE, LOWRES

PREV_ENSEMBLE = f"ensemble-{LOWRES}"   # the cascade's first stage, ensembled over its folds
EVALUATE_TEST = "evaluate-test"        # nnUNetv2_evaluate_folder on the final predictions


def tool(name: str) -> str:
    """An nnU-Net console script: next to this Python first (same venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name) or name


def predict_key(cfg: str, fold: int) -> str:
    return f"predict-{cfg}-fold{fold}"


class NnunetPrediction:
    """Mixin of NnunetKind: the graph and the argument lists of the test-set stages."""

    # -- where things are ----------------------------------------------------------------------
    def prediction_dir(self, cfg: str, fold: int) -> Path:
        return self.root / "nnunet_predictions" / cfg / f"fold_{fold}"

    @property
    def prev_stage_dir(self) -> Path:
        """The 3d_lowres ensemble of the test set: segmentations the cascade reads."""
        return self.root / "nnunet_predictions" / LOWRES / "ensemble"

    @property
    def ensemble_dir(self) -> Path:
        if self.exp.pipeline.postprocess and self.exp.pipeline.find_best:
            return self.root / "nnunet_predictions" / "ensemble"
        return self.exp.layout.predictions

    def test_images(self) -> Path | None:
        if self.exp.test_images:
            return self.exp.resolve(self.exp.test_images)
        found = glob.glob(str(self.roots["raw"] / self.dataset_glob() / "imagesTs"))
        return Path(found[0]) if found else None

    def test_labels(self) -> Path | None:
        """The dataset's labelsTs, which the final predictions are evaluated against; none when
        `test_images:` names another folder (its labels are not known)."""
        if self.exp.test_images or "raw" not in self.roots:
            return None
        found = glob.glob(str(self.roots["raw"] / self.dataset_glob() / "labelsTs"))
        return Path(found[0]) if found and Path(found[0]).is_dir() else None

    def raw_dataset_json(self) -> Path | None:
        found = glob.glob(str(self.roots["raw"] / self.dataset_glob() / "dataset.json")) \
            if "raw" in self.roots else []
        return Path(found[0]) if found else None

    def inference_information(self) -> dict | None:
        for path in glob.glob(str(self.roots["results"] / self.dataset_glob()
                                  / "inference_information.json")):
            try:
                return json.loads(Path(path).read_text())
            except (OSError, ValueError):
                return None
        return None

    def chosen_configurations(self) -> list[str]:
        """What find-best chose (one configuration or a pair); every one without find-best."""
        if not self.exp.pipeline.find_best:
            return list(self.exp.configurations)
        info = self.inference_information() or {}
        chosen = (info.get("best_model_or_ensemble") or {}).get("selected_model_or_models") or []
        return [c.get("configuration") for c in chosen if isinstance(c, dict)]

    # -- the graph -----------------------------------------------------------------------------
    def prediction_jobs(self, cfgs: list[str], fold_keys: dict[str, list[str]]) -> list[Job]:
        """The test-set stages after the folds (and find-best); `cfgs` has 3d_lowres first."""
        lay, p, folds = self.exp.layout, self.exp.pipeline, self.exp.folds
        jobs: list[Job] = []
        predicts: list[str] = []
        for cfg in cfgs:
            deps = ("find-best",) if p.find_best else tuple(fold_keys[cfg])
            if cfg == CASCADE:
                deps += (PREV_ENSEMBLE,)
            for k in folds:
                key = predict_key(cfg, k)
                predicts.append(key)
                jobs.append(Job(key, "stage", "predict", lay.stage_dir(key), configuration=cfg,
                                fold=k, depends_on=deps, needs_gpu=True))
            if cfg == LOWRES and CASCADE in cfgs:
                jobs.append(Job(PREV_ENSEMBLE, "stage", "ensemble-prev-stage",
                                lay.stage_dir(PREV_ENSEMBLE), configuration=LOWRES,
                                depends_on=tuple(predict_key(LOWRES, k) for k in folds)))
        jobs.append(Job("ensemble", "stage", "ensemble", lay.stage_dir("ensemble"),
                        depends_on=tuple(predicts)))
        last = "ensemble"
        if p.postprocess and p.find_best:
            jobs.append(Job("postprocess", "stage", "postprocess", lay.stage_dir("postprocess"),
                            depends_on=("ensemble",)))
            last = "postprocess"
        if self.test_labels() is not None:
            jobs.append(Job(EVALUATE_TEST, "stage", "evaluate", lay.stage_dir(EVALUATE_TEST),
                            depends_on=(last,)))
        return jobs

    # -- launches ------------------------------------------------------------------------------
    def _predict(self, job: Job, dev: str):
        s, cfg, k = self.s, job.configuration, job.fold
        images = self.test_images()
        if images is None or not images.is_dir():
            return self._skip(job, "no test images (imagesTs, or test_images:) to predict")
        chosen = self.chosen_configurations()
        if cfg not in chosen and not (cfg == LOWRES and CASCADE in chosen):
            also = f", nor {CASCADE} (which needs its predictions)" \
                if cfg == LOWRES and CASCADE in self.exp.configurations else ""
            return self._skip(job, f"{cfg} was not chosen by find-best{also}")
        out = self.prediction_dir(cfg, k)
        argv = [tool("nnUNetv2_predict"), "-i", str(images), "-o", str(out),
                "-d", s.dataset_arg, "-c", cfg, "-p", s.plans, "-tr", s.trainer, "-f", str(k),
                "--save_probabilities", "-device", dev] + self._predict_np()
        if not s.tta:
            argv.append("--disable_tta")
        if cfg != CASCADE:
            return self._stage(job) + argv, False
        prev = self.prev_stage_dir
        argv += ["-prev_stage_predictions", str(prev)]
        need = (f"--require={prev}={LOWRES}'s test-set ensemble ({prev}) is missing, which "
                f"{CASCADE} reads as its previous stage: run {PREV_ENSEMBLE} first")
        return self._stage(job, need) + argv, False

    def _ensemble_prev_stage(self, job: Job, dev: str):
        if CASCADE not in self.chosen_configurations():
            return self._skip(job, f"{CASCADE} was not chosen by find-best, so nothing needs "
                              f"{LOWRES}'s ensemble as its previous stage")
        inputs = self._existing(self.prediction_dir(LOWRES, k) for k in self.exp.folds)
        if not inputs:
            return self._skip(job, f"{LOWRES} predicted nothing, so there is nothing to ensemble")
        # segmentations only (no --save_npz): -prev_stage_predictions reads <case><file_ending>
        argv = [tool("nnUNetv2_ensemble"), "-i", *inputs, "-o", str(self.prev_stage_dir)]
        return self._stage(job) + argv + self._np(), False

    def _ensemble(self, job: Job, dev: str):
        inputs = self._existing(self.prediction_dir(c, k) for c in self.chosen_configurations()
                                for k in self.exp.folds)
        if not inputs:
            return self._skip(job, "nothing was predicted, so there is nothing to ensemble")
        argv = [tool("nnUNetv2_ensemble"), "-i", *inputs, "-o", str(self.ensemble_dir)]
        return self._stage(job) + argv + self._np(), False

    def _postprocess(self, job: Job, dev: str):
        best = (self.inference_information() or {}).get("best_model_or_ensemble") or {}
        pkl, plans = best.get("postprocessing_file"), best.get("some_plans_file")
        if not self.ensemble_dir.is_dir():
            return self._skip(job, "nothing was predicted, so there is nothing to postprocess")
        if not pkl:
            return self._skip(job, "find-best left no postprocessing decision")
        argv = [tool("nnUNetv2_apply_postprocessing"), "-i", str(self.ensemble_dir),
                "-o", str(self.exp.layout.predictions), "-pp_pkl_file", pkl] + self._np()
        if plans:
            argv += ["-plans_json", plans]
        return self._stage(job) + argv, False

    def _evaluate_test(self, job: Job, dev: str):
        labels, pred = self.test_labels(), self.exp.layout.predictions
        if labels is None:
            return self._skip(job, "no test labels (labelsTs) to evaluate the predictions against")
        dataset_json = self.raw_dataset_json()
        ending = ".nii.gz"
        if dataset_json is not None:
            try:
                ending = json.loads(dataset_json.read_text()).get("file_ending") or ending
            except (OSError, ValueError, AttributeError):
                pass
        cases = sorted(p.name for p in pred.glob(f"*{ending}") if not p.name.startswith(".")) \
            if pred.is_dir() else []
        if not cases:
            return self._skip(job, "nothing was predicted, so there is nothing to evaluate")
        plans = self._plans_json()
        if dataset_json is None or plans is None:
            return self._skip(job, "nnU-Net's dataset.json or plans.json was not found "
                              f"(raw dataset: {dataset_json}, trained model: {plans})")
        need = []
        missing = [c for c in cases if not (labels / c).exists()]
        if missing:
            shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
            need.append(f"--require={labels / missing[0]}={labels} has no label for "
                        f"{len(missing)} predicted test case(s) ({shown}): add their labels, "
                        "or move labelsTs aside to predict without a test-set evaluation")
        # --chill: labels of cases that were not predicted are left out, not an error
        argv = [tool("nnUNetv2_evaluate_folder"), str(labels), str(pred), "-djfile",
                str(dataset_json), "-pfile", str(plans), "-o", str(pred / "summary.json"),
                "--chill"] + self._np()
        return self._stage(job, *need) + argv, False

    def _plans_json(self) -> Path | None:
        """The plans the chosen model was trained with (find-best names one), else the first
        configuration's."""
        best = (self.inference_information() or {}).get("best_model_or_ensemble") or {}
        some = best.get("some_plans_file")
        if isinstance(some, str) and Path(some).exists():
            return Path(some)
        for cfg in [*self.chosen_configurations(), *self.exp.configurations]:
            found = glob.glob(f"{self.model_dir_glob(cfg)}/plans.json")
            if found:
                return Path(found[0])
        return None

    def _predict_np(self) -> list[str]:
        n = self.s.predict_processes
        if n is None:
            return self._np("-npp") + self._np("-nps")
        return ["-npp", str(n), "-nps", str(n)]      # 0 and 0: nnU-Net's sequential mode

    @staticmethod
    def _existing(folders) -> list[str]:
        return [str(f) for f in folders if Path(f).is_dir()]
