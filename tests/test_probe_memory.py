"""probe-memory on the CPU: real steps per candidate in their own process, RSS, what fits."""

import json
import subprocess
import sys

from train_fixture import ROOT, trainer_env, write_experiment
from trainer.commands.probe_memory import _best


def test_probe_memory_on_cpu_reports_rss_and_fit(tmp_path):
    exp = write_experiment(tmp_path, num_workers=0)
    r = subprocess.run([sys.executable, "-m", "trainer", "probe-memory", "--experiment", str(exp),
                        "--configuration", "3d_fullres", "--batch-sizes", "8", "--widths", "1",
                        "--checkpointing", "off", "--budget-gb", "0.05", "--json"],
                       cwd=ROOT, env=trainer_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["device"] == "cpu" and out["budget_gb"] == 0.05
    [c] = out["candidates"]
    assert c["data"] == "preprocessed cases" and c["step_s"] > 0 and c["batch_size"] == 8
    # the process' peak RSS: torch alone is far above 50 MB, and the steps added to it
    assert c["peak_mb"] == c["rss_peak_mb"] > c["rss_baseline_mb"] > 50
    assert c["amp"] is False and c["fits"] is False and out["best"] is None


def test_best_fit_prefers_full_width_then_no_recompute_then_batch():
    rows = [{"fits": True, "width": 0.5, "grad_checkpointing": False, "batch_size": 8, "amp": True},
            {"fits": True, "width": 1.0, "grad_checkpointing": True, "batch_size": 4, "amp": True},
            {"fits": True, "width": 1.0, "grad_checkpointing": False, "batch_size": 2, "amp": True},
            {"fits": False, "width": 1.0, "grad_checkpointing": False, "batch_size": 4, "amp": True}]
    assert _best(rows) is rows[2]
    assert _best([{**rows[0], "fits": False}]) is None


def test_probe_memory_usage_errors_are_clear(tmp_path):
    exp = write_experiment(tmp_path)
    r = subprocess.run([sys.executable, "-m", "trainer", "probe-memory", "--experiment", str(exp),
                        "--configuration", "2d"], cwd=ROOT, env=trainer_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "'2d' is not in configurations" in r.stderr
    assert "Traceback" not in r.stderr
