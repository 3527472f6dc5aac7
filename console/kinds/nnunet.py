"""`trainer: nnunetv2`: nnU-Net v2's own workflow as the engine's job graph.

plan (nnUNetv2_plan_and_preprocess) -> folds (trainer.external.nnunet_fold, nnUNetv2_train's
arguments, latest checkpoint every epoch) -> find-best (nnUNetv2_find_best_configuration) ->
one nnUNetv2_predict per configuration and fold, each on its own device -> ensemble
(nnUNetv2_ensemble) -> postprocess (nnUNetv2_apply_postprocessing). Every job runs under
console.runner, which writes the run's metrics.jsonl. Nothing here imports nnU-Net.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import sys
from pathlib import Path

from console.jobs import Job
from console.kinds import Launch
from contracts.errors import ConfigError
from contracts.experiment import Experiment, run_name

ROOTS = {"raw": "nnUNet_raw", "preprocessed": "nnUNet_preprocessed", "results": "nnUNet_results"}
PREPROCESSED_AS = {"3d_cascade_fullres": "3d_fullres"}   # the cascade trains on 3d_fullres data


def tool(name: str) -> str:
    """An nnU-Net console script: next to this Python first (same venv), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name) or name


def runner() -> list[str]:
    return [sys.executable, "-m", "console.runner"]


class NnunetKind:
    def __init__(self, exp: Experiment, launching: bool = True) -> None:
        self.exp = exp
        self.s = exp.nnunet
        self.roots: dict[str, Path] = {}
        missing = []
        for key, env in ROOTS.items():
            value = getattr(self.s, key) or os.environ.get(env)
            if not value:
                missing.append(f"nnunet.{key} (or ${env})")
            else:
                self.roots[key] = exp.resolve(Path(value))
        if missing and launching:
            raise ConfigError(f"{exp.source}: nnU-Net's folders are not set: "
                              f"{', '.join(missing)}. Set them in the nnunet: section or export "
                              "the environment variables before starting foldwatch")
        self.root = exp.layout.root

    # -- names -----------------------------------------------------------------------------
    def dataset_glob(self) -> str:
        d = self.s.dataset
        return d if isinstance(d, str) else f"Dataset{d:03d}_*"

    def model_dir_glob(self, cfg: str) -> str:
        return str(self.roots["results"] / self.dataset_glob()
                   / f"{self.s.trainer.rpartition('.')[2]}__{self.s.plans}__{cfg}")

    def fold_dir_glob(self, cfg: str, fold: int) -> str:
        return f"{self.model_dir_glob(cfg)}/fold_{fold}"

    def prediction_dir(self, cfg: str, fold: int) -> Path:
        return self.root / "nnunet_predictions" / cfg / f"fold_{fold}"

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

    def epochs_hint(self) -> int:
        if self.s.epochs:
            return self.s.epochs
        m = re.search(r"_(\d+)epochs$", self.s.trainer)
        return int(m.group(1)) if m else 1000       # nnUNetTrainer's num_epochs

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

    # -- the graph ---------------------------------------------------------------------------
    def build_jobs(self) -> list[Job]:
        lay, p = self.exp.layout, self.exp.pipeline
        # the cascade after 3d_lowres, whose folds it waits for; otherwise the file's order
        cfgs = sorted(self.exp.configurations, key=lambda c: c == "3d_cascade_fullres")
        folds = self.exp.folds
        jobs: list[Job] = []
        before_folds: tuple[str, ...] = ()
        if self.s.plan:
            jobs.append(Job("plan", "stage", "plan", lay.stage_dir("plan")))
            before_folds = ("plan",)
        fold_keys: dict[str, list[str]] = {}
        for cfg in cfgs:
            for i, k in enumerate(folds):
                key = run_name(cfg, k)
                deps = before_folds
                if cfg == "3d_cascade_fullres":
                    deps += tuple(run_name("3d_lowres", f) for f in folds)
                first = run_name(cfg, folds[0])
                stagger = (first,) if self.s.stagger_folds and i > 0 else ()
                fold_keys.setdefault(cfg, []).append(key)
                jobs.append(Job(key, "fold", "train", lay.fold_dir(cfg, k), configuration=cfg,
                                fold=k, depends_on=deps, needs_gpu=True, starts_after=stagger))
        all_folds = tuple(k for keys in fold_keys.values() for k in keys)
        if p.find_best:
            jobs.append(Job("find-best", "stage", "find-best", lay.stage_dir("find-best"),
                            depends_on=all_folds))
        if p.predict_test:
            predicts = []
            for cfg in cfgs:
                for k in folds:
                    key = f"predict-{cfg}-fold{k}"
                    predicts.append(key)
                    deps = ("find-best",) if p.find_best else tuple(fold_keys[cfg])
                    jobs.append(Job(key, "stage", "predict", lay.stage_dir(key),
                                    configuration=cfg, fold=k, depends_on=deps, needs_gpu=True))
            jobs.append(Job("ensemble", "stage", "ensemble", lay.stage_dir("ensemble"),
                            depends_on=tuple(predicts)))
            if p.postprocess and p.find_best:
                jobs.append(Job("postprocess", "stage", "postprocess",
                                lay.stage_dir("postprocess"), depends_on=("ensemble",)))
        return jobs

    # -- one launch ----------------------------------------------------------------------------
    def env(self, job: Job) -> dict[str, str]:
        env = {v: str(self.roots[k]) for k, v in ROOTS.items()}
        env["PYTHONUNBUFFERED"] = "1"              # live output through the runner's pipe
        # Folds only: nnU-Net's planner calls torch.set_num_threads(nnUNet_n_proc_DA), which
        # fails for 0.
        if self.s.workers is not None and job.kind == "fold":
            env["nnUNet_n_proc_DA"] = str(self.s.workers)
        return env

    def launch(self, job: Job, device: str, overrides: dict | None) -> Launch:
        dev = "cuda" if device.startswith("gpu") else "cpu"
        build = {"plan": self._plan, "train": self._fold, "find-best": self._find_best,
                 "predict": self._predict, "ensemble": self._ensemble,
                 "postprocess": self._postprocess}[job.command]
        argv, resume = build(job, dev)
        return Launch(argv, self.env(job), resume)

    def _stage(self, job: Job, *more: str) -> list[str]:
        return runner() + ["--run-dir", str(job.run_dir), "--stage", job.key, *more, "--"]

    def _np(self, flag: str = "-np") -> list[str]:
        return [flag, str(self.s.processes)] if self.s.processes else []

    def _plan(self, job: Job, dev: str):
        wanted = []
        for cfg in self.exp.configurations:
            c = PREPROCESSED_AS.get(cfg, cfg)
            if c not in wanted:
                wanted.append(c)
        argv = [tool("nnUNetv2_plan_and_preprocess"), "-d", self.s.dataset_arg, "-c", *wanted]
        if self.s.planner:
            argv += ["-pl", self.s.planner]
        if self.s.verify_dataset_integrity:
            argv.append("--verify_dataset_integrity")
        argv += self._np()
        return self._stage(job) + argv, False

    def _fold(self, job: Job, dev: str):
        s, cfg, k = self.s, job.configuration, job.fold
        folder = self.fold_dir_glob(cfg, k)
        resume = any(glob.glob(f"{folder}/checkpoint_{n}.pth") for n in ("latest", "final"))
        program = [sys.executable, "-m", "trainer.external.nnunet_fold", s.dataset_arg, cfg,
                   str(k), "-p", s.plans, "-tr", s.trainer, "-device", dev]
        if s.npz:
            program.append("--npz")
        if resume:
            program.append("--c")
        for flag, value in (("--epochs", s.epochs), ("--iterations", s.iterations_per_epoch),
                            ("--val-iterations", s.val_iterations)):
            if value:
                program += [flag, str(value)]
        argv = runner() + ["--run-dir", str(job.run_dir), "--configuration", cfg, "--fold",
                           str(k), "--device", dev, "--epochs", str(self.epochs_hint()),
                           "--metrics", "nnunet", "--nnunet-dir", folder,
                           "--workers-env", "nnUNet_n_proc_DA", "--retry-arg=--c"]
        if s.iterations_per_epoch:
            argv += ["--iterations", str(s.iterations_per_epoch)]
        return argv + ["--"] + program, resume

    def _find_best(self, job: Job, dev: str):
        s = self.s
        require = []
        for cfg in self.exp.configurations:
            for k in self.exp.folds:
                final = f"{self.fold_dir_glob(cfg, k)}/checkpoint_final.pth"
                found = glob.glob(final)
                path = found[0] if found else final
                require.append(f"--require={path}=fold {run_name(cfg, k)} has no "
                               f"checkpoint_final.pth ({path}): its training did not finish. "
                               "Resume that fold, then find-best runs")
        argv = [tool("nnUNetv2_find_best_configuration"), s.dataset_arg,
                "-c", *self.exp.configurations, "-p", s.plans, "-tr", s.trainer,
                "-f", *map(str, self.exp.folds)] + self._np()
        if not s.npz:
            argv.append("--disable_ensembling")
        return runner() + ["--run-dir", str(job.run_dir), "--stage", job.key, *require,
                           "--"] + argv, False

    def _skip(self, job: Job, why: str):
        return runner() + ["--run-dir", str(job.run_dir), "--stage", job.key, "--skip", why], False

    def _predict(self, job: Job, dev: str):
        s, cfg, k = self.s, job.configuration, job.fold
        images = self.test_images()
        if images is None or not images.is_dir():
            return self._skip(job, "no test images (imagesTs, or test_images:) to predict")
        if cfg not in self.chosen_configurations():
            return self._skip(job, f"{cfg} was not chosen by find-best")
        if cfg == "3d_cascade_fullres":
            return self._skip(job, "prediction with 3d_cascade_fullres is not run by foldwatch "
                              "yet: use the commands in inference_instructions.txt")
        out = self.prediction_dir(cfg, k)
        argv = [tool("nnUNetv2_predict"), "-i", str(images), "-o", str(out), "-d", s.dataset_arg,
                "-c", cfg, "-p", s.plans, "-tr", s.trainer, "-f", str(k), "--save_probabilities",
                "-device", dev] + self._np("-npp") + self._np("-nps")
        return self._stage(job) + argv, False

    def _ensemble(self, job: Job, dev: str):
        inputs = [str(self.prediction_dir(c, k)) for c in self.chosen_configurations()
                  if c != "3d_cascade_fullres" for k in self.exp.folds]
        inputs = [i for i in inputs if Path(i).is_dir()]
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
