"""`trainer: nnunetv2`: nnU-Net v2's own workflow as the engine's job graph.

plan (nnUNetv2_plan_and_preprocess) -> folds (trainer.external.nnunet_fold, nnUNetv2_train's
arguments, latest checkpoint every epoch) -> find-best (nnUNetv2_find_best_configuration) ->
the test-set stages (console/kinds/nnunet_predict.py: one nnUNetv2_predict per configuration
and fold, the cascade's 3d_lowres ensemble, nnUNetv2_ensemble, nnUNetv2_apply_postprocessing).
Every job runs under console.runner, which writes the run's metrics.jsonl. Nothing here imports
nnU-Net.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

from console.kinds.jobs import Job
from console.kinds import Launch
from console.kinds.nnunet_predict import NnunetPrediction, tool
from contracts.errors import ConfigError
from contracts.experiment import CASCADE, LOWRES, Experiment, run_name

ROOTS = {"raw": "nnUNet_raw", "preprocessed": "nnUNet_preprocessed", "results": "nnUNet_results"}
# nnUNetTrainer's num_iterations_per_epoch; no trainer variant of nnunetv2 2.8.1 changes it (a
# custom one may: the fold logs its own figure, console/runner/nnunet_log.py)
NNUNET_ITERATIONS = 250
PREPROCESSED_AS = {"3d_cascade_fullres": "3d_fullres"}   # the cascade trains on 3d_fullres data


def runner() -> list[str]:
    return [sys.executable, "-m", "console.runner"]


class NnunetKind(NnunetPrediction):
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
        if launching and exp.wandb_by_trainer and importlib.util.find_spec("wandb") is None:
            raise ConfigError(f"{exp.source}: export.wandb: nnU-Net's W&B logger needs the "
                              "wandb package where the folds run: pip install 'foldwatch[wandb]' "
                              "(or switch export.wandb off)")
        self.root = exp.layout.root
        if CASCADE in exp.configurations and not missing:
            self._check_cascade_folds()

    def _check_cascade_folds(self) -> None:
        """The cascade trains on a 3d_lowres prediction of EVERY training case, each made by the
        fold that held it out: all of nnU-Net's splits must be trained (5, or a splits file's)."""
        splits, where = 5, "nnU-Net's default 5-fold split"
        for root in ("preprocessed", "raw"):      # plan copies raw's splits_final.json over
            for path in glob.glob(str(self.roots[root] / self.dataset_glob()
                                      / "splits_final.json")):
                try:
                    splits, where = len(json.loads(Path(path).read_text())), path
                except (OSError, ValueError, TypeError) as e:
                    raise ConfigError(f"{path}: not a readable nnU-Net splits file ({e})")
                break
            else:
                continue
            break
        want = list(range(splits))
        if self.exp.folds != want:
            raise ConfigError(
                f"{self.exp.source}: folds: {self.exp.folds}: {CASCADE} needs every fold of "
                f"the splits ({where}: {splits} folds), because each training case needs a "
                f"{LOWRES} prediction from the fold that held it out. Set folds: {want}, or "
                "put a splits_final.json with fewer splits in the raw dataset folder")

    # -- names -----------------------------------------------------------------------------
    def dataset_glob(self) -> str:
        d = self.s.dataset
        return d if isinstance(d, str) else f"Dataset{d:03d}_*"

    def model_dir_glob(self, cfg: str) -> str:
        return str(self.roots["results"] / self.dataset_glob()
                   / f"{self.s.trainer.rpartition('.')[2]}__{self.s.plans}__{cfg}")

    def fold_dir_glob(self, cfg: str, fold: int) -> str:
        return f"{self.model_dir_glob(cfg)}/fold_{fold}"

    def epochs_hint(self) -> int:
        if self.s.epochs:
            return self.s.epochs
        m = re.search(r"_(\d+)epochs$", self.s.trainer)
        return int(m.group(1)) if m else 1000       # nnUNetTrainer's num_epochs

    def results_source(self):
        from console.kinds.nnunet_results import NnunetResults
        return NnunetResults(self)

    # -- the graph ---------------------------------------------------------------------------
    def build_jobs(self) -> list[Job]:
        lay, p = self.exp.layout, self.exp.pipeline
        # the cascade after 3d_lowres, whose folds it waits for; otherwise the file's order
        cfgs = sorted(self.exp.configurations, key=lambda c: c == CASCADE)
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
                if cfg == CASCADE:
                    deps += tuple(run_name(LOWRES, f) for f in folds)
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
            jobs += self.prediction_jobs(cfgs, fold_keys)
        return jobs

    # -- one launch ----------------------------------------------------------------------------
    def env(self, job: Job) -> dict[str, str]:
        env = {v: str(self.roots[k]) for k, v in ROOTS.items()}
        env["PYTHONUNBUFFERED"] = "1"              # live output through the runner's pipe
        # Folds only: nnU-Net's planner calls torch.set_num_threads(nnUNet_n_proc_DA), which
        # fails for 0.
        if self.s.workers is not None and job.kind == "fold":
            env["nnUNet_n_proc_DA"] = str(self.s.workers)
        if self.s.processes:
            # the pools nnU-Net sizes itself (default 8 spawned processes, each importing torch)
            env["nnUNet_def_n_proc"] = str(self.s.processes)
        if job.kind == "fold" and self.exp.wandb_by_trainer:
            env.update(self.wandb_env(job))
        return env

    def wandb_env(self, job: Job) -> dict[str, str]:
        """export.wandb through nnU-Net 2.8's own W&B logger (nnunetv2/training/logging/
        nnunet_logger.py): a run per fold in its fold_<k>/wandb/, continued by `--c` under
        the same id. wandb.init reads group, job type and name from the environment where
        nnU-Net passes none: the runs sit beside the exporter's, named the same way."""
        w = self.exp.export.wandb
        return {"nnUNet_wandb_enabled": "1", "nnUNet_wandb_project": self.exp.wandb_project,
                "nnUNet_wandb_mode": w.mode, "WANDB_RUN_GROUP": self.exp.experiment,
                "WANDB_JOB_TYPE": job.configuration or "",
                "WANDB_NAME": f"{job.configuration}/fold_{job.fold}",
                # W&B's service writes the run's log to disk every 15 s by default and a
                # killed fold (OOM killer, node loss) loses what was not written yet; every
                # 2 s keeps that to the epoch in progress (and lets `wandb leet` follow it)
                "WANDB__TRANSACTION_LOG_FLUSH_INTERVAL": "2"}

    def launch(self, job: Job, device: str, overrides: dict | None) -> Launch:
        dev = "cuda" if device.startswith("gpu") else "cpu"
        build = {"plan": self._plan, "train": self._fold, "find-best": self._find_best,
                 "predict": self._predict, "ensemble-prev-stage": self._ensemble_prev_stage,
                 "ensemble": self._ensemble, "postprocess": self._postprocess,
                 "evaluate": self._evaluate_test}[job.command]
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
        if self.s.gpu_memory_target_gb:
            # other patch sizes: written under the plans name the folds train with, so
            # nnU-Net's default plans are not overwritten unless `plans` names them
            argv += ["-gpu_memory_target", f"{self.s.gpu_memory_target_gb:g}",
                     "-overwrite_plans_name", self.s.plans]
        if self.s.verify_dataset_integrity:
            argv.append("--verify_dataset_integrity")
        argv += self._np() + self._np("-npfp")         # -npfp: the fingerprint's pool
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
        if not s.tta:
            program.append("--disable-tta")
        for flag, value in (("--epochs", s.epochs), ("--iterations", s.iterations_per_epoch),
                            ("--val-iterations", s.val_iterations)):
            if value:
                program += [flag, str(value)]
        argv = runner() + ["--run-dir", str(job.run_dir), "--configuration", cfg, "--fold",
                           str(k), "--device", dev, "--epochs", str(self.epochs_hint()),
                           "--metrics", "nnunet", "--nnunet-dir", folder,
                           "--workers-env", "nnUNet_n_proc_DA", "--retry-arg=--c",
                           "--iterations", str(s.iterations_per_epoch or NNUNET_ITERATIONS)]
        batch = self.planned_batch(cfg)
        if batch:
            argv += ["--batch-size", str(batch)]
        return argv + ["--"] + program, resume

    def planned_batch(self, cfg: str) -> int | None:
        """The configuration's batch_size in nnU-Net's plans (`inherits_from` followed, as
        nnU-Net's PlansManager does); None before the plans exist."""
        found = glob.glob(str(self.roots["preprocessed"] / self.dataset_glob()
                              / f"{self.s.plans}.json")) if "preprocessed" in self.roots else []
        try:
            configurations = json.loads(Path(found[0]).read_text())["configurations"]
        except (IndexError, OSError, ValueError, KeyError, TypeError):
            return None
        seen: set[str] = set()
        while isinstance(configurations.get(cfg), dict) and cfg not in seen:
            seen.add(cfg)
            c = configurations[cfg]
            if isinstance(c.get("batch_size"), int):
                return c["batch_size"]
            cfg = c.get("inherits_from")
        return None

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
