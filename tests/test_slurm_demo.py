"""The demo experiment (tiny settings, the REAL trainer) to completion on a real Slurm
cluster: every stage and fold an sbatch job, the console never importing torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from console.engine.core import Engine
from engine_helpers import REPO, poll_until
from slurm_helpers import no_leftover_jobs, slurm_cluster  # noqa: F401

TINY = {"2d": {"patch_size": "auto", "batch_size": 4, "epochs": 1, "iterations_per_epoch": 2,
               "val_iterations": 1, "base_features": 4, "max_features": 16, "num_workers": 0,
               "tta_mirroring": False}}


def _small_demo(tmp_path, monkeypatch):
    """A smaller demo dataset (the time goes into starting trainer processes, not data) and
    configs/demo.yaml as a dict; the real trainer, one thread."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("FOLDWATCH_TRAINER", raising=False)
    data = tmp_path / "data" / "Dataset900_Demo"
    subprocess.run([sys.executable, "-m", "trainer", "make-demo-data", str(data), "--train",
                    "10", "--test", "2"], cwd=REPO, check=True, capture_output=True, timeout=600)
    exp = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    return data, exp


@pytest.mark.slurm
def test_demo_experiment_completes_through_sbatch(tmp_path, monkeypatch, slurm_cluster,
                                                  no_leftover_jobs):
    data, exp = _small_demo(tmp_path, monkeypatch)
    exp.update(experiment="sdemo", dataset=str(data), results=str(tmp_path / "results"),
               folds=[0, 1], configurations=TINY, backend="slurm",
               pipeline={"evaluate": True, "find_best": True, "postprocess": False,
                         "predict_test": True},
               slurm={"gpus_per_run": 0, "cpus_per_run": 1, "mem_per_run": "3G",
                      "time_limit": "15", "poll_interval_s": 0.5, "job_name_prefix": "fwdemo-"})
    path = tmp_path / "sdemo.yaml"
    path.write_text(yaml.safe_dump(exp))
    engine = Engine(path)
    try:
        snap = poll_until(engine, lambda s: s.finished, timeout=600, every=0.3)
        assert snap.succeeded, [(r.key, r.state, r.message) for r in snap.runs]
        for run in engine.runs.values():
            rec = json.loads((run.job.run_dir / "slurm-job.json").read_text())
            assert rec["job_id"].isdigit(), run.key
            starts = [json.loads(line) for line in
                      (run.job.run_dir / "metrics.jsonl").read_text().splitlines()
                      if '"start"' in line]
            assert starts and starts[-1]["pid"], run.key
        lay = engine.layout
        assert (lay.fold_dir("2d", 1) / "checkpoints" / "final.pt").exists()
        assert lay.best_configuration.exists()
        assert any(lay.predictions.glob("*.nii.gz"))
    finally:
        engine.close()
    # The console side stayed torch-free: a fresh interpreter importing the Slurm backend.
    probe = subprocess.run([sys.executable, "-c", "import sys, console.engine.core, "
                            "console.backends.slurm.backend; print('torch' in sys.modules)"],
                           capture_output=True, text=True, cwd=REPO, check=True)
    assert probe.stdout.strip() == "False"


@pytest.mark.slow
def test_real_trainer_walltime_checkpoints_and_resumes_until_done(tmp_path, monkeypatch,
                                                                  slurm_cluster,
                                                                  no_leftover_jobs):
    """The real trainer under a 2-minute limit: SIGUSR2 ahead of the limit, latest.pt saved
    inside the epoch, resubmitted with --resume (no restart counted) until the fold is done."""
    data, exp = _small_demo(tmp_path, monkeypatch)
    # Enough training to outlast the first job even on a fast idle machine (the fold ran
    # 800 iterations inside one 50 s window once the augmentation got cheaper).
    long = {"2d": {**TINY["2d"], "epochs": 2, "iterations_per_epoch": 1500}}
    exp.update(experiment="swall", dataset=str(data), results=str(tmp_path / "results"),
               folds=[0], configurations=long, backend="slurm",
               pipeline={"evaluate": False, "find_best": False, "postprocess": False,
                         "predict_test": False},
               slurm={"gpus_per_run": 0, "cpus_per_run": 1, "mem_per_run": "3G",
                      "time_limit": "2", "checkpoint_before_s": 70, "poll_interval_s": 1,
                      "job_name_prefix": "fwwall-"})
    exp["watchdog"]["stall_timeout_s"] = 300
    path = tmp_path / "swall.yaml"
    path.write_text(yaml.safe_dump(exp))
    engine = Engine(path)
    try:
        snap = poll_until(engine, lambda s: s.finished, timeout=1500, every=0.5)
        fold = engine.runs["2d/0"]
        assert snap.succeeded, [(r.key, r.state, r.message) for r in snap.runs]
        requeues = [d for d in engine.decisions.recent if d.action == "requeue"
                    and d.run_key == "2d/0"]
        assert requeues and fold.total_restarts == 0
        ends = [json.loads(line) for line in
                (fold.job.run_dir / "metrics.jsonl").read_text().splitlines()
                if '"end"' in line]
        assert ends[0]["status"] == "stopped" and ends[0]["stop_cause"] in ("timeout", "signal")
        assert ends[-1]["status"] == "completed"
        starts = [json.loads(line) for line in
                  (fold.job.run_dir / "metrics.jsonl").read_text().splitlines()
                  if '"start"' in line]
        assert len(starts) == len(requeues) + 1 and starts[1]["resumed_from"] is not None
    finally:
        engine.close()
