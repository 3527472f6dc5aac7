"""The demo experiment (tiny settings, the REAL trainer) to completion on a real Slurm
cluster: every stage and fold an sbatch job, the console never importing torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from console.engine import Engine
from engine_helpers import REPO, poll_until
from slurm_helpers import no_leftover_jobs, slurm_cluster  # noqa: F401

TINY = {"2d": {"patch_size": "auto", "batch_size": 4, "epochs": 1, "iterations_per_epoch": 2,
               "val_iterations": 1, "base_features": 4, "max_features": 16, "num_workers": 0,
               "tta_mirroring": False}}


@pytest.mark.slurm
def test_demo_experiment_completes_through_sbatch(tmp_path, monkeypatch, slurm_cluster,
                                                  no_leftover_jobs):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("FOLDWATCH_TRAINER", raising=False)
    data = tmp_path / "data" / "Dataset900_Demo"
    # A smaller demo dataset: the time goes into starting six trainer processes, not data.
    subprocess.run([sys.executable, "-m", "trainer", "make-demo-data", str(data), "--train",
                    "10", "--test", "2"], cwd=REPO, check=True, capture_output=True, timeout=600)
    exp = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
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
    probe = subprocess.run([sys.executable, "-c", "import sys, console.engine, "
                            "console.slurm.backend; print('torch' in sys.modules)"],
                           capture_output=True, text=True, cwd=REPO, check=True)
    assert probe.stdout.strip() == "False"
