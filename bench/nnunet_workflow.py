"""foldwatch-driven nnU-Net vs the plain shell workflow, on the same tiny dataset.

Both start from the same plan_and_preprocess output (made once, timed separately) and train
the same folds with the same short epoch budget on the CPU; in both, fold 1 is killed with
SIGKILL when its training log reaches epoch --kill-at.

- shell: what the issue's users type: one `nnUNetv2_train`-equivalent per fold in parallel
  (nnU-Net's own checkpoint policy: latest every 50 epochs), the killed fold restarted with
  `--c` the moment it dies (a best case for a person), then find_best_configuration,
  `nnUNetv2_predict -f 0 1` (folds one after the other), apply_postprocessing.
- foldwatch: `trainer: nnunetv2` through the engine (watchdog restart, checkpoint every
  epoch, a prediction per fold in parallel, ensemble, postprocessing).

Prints wall time, epochs redone because of the kill, and the time from the last fold's end to
the final (postprocessed) prediction. Needs the nnunet extra.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

BIN = Path(sys.executable).parent


def env_for(tmp: Path, results: str) -> dict:
    # nnUNet_def_n_proc: both sides' nnU-Net pools at 1 (foldwatch sets it from `processes`)
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", nnUNet_n_proc_DA="0",
                nnUNet_def_n_proc="1",
                nnUNet_raw=str(tmp / "raw"), nnUNet_preprocessed=str(tmp / "pre"),
                nnUNet_results=str(tmp / results), CUDA_VISIBLE_DEVICES="")


def run(argv: list[str], env: dict, log: Path) -> None:
    with open(log, "ab") as out:
        subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)


def fold_log_epochs(results: Path, fold: int) -> list[int]:
    """Every `Epoch N` line of a fold's training logs, in order."""
    out = []
    for p in sorted(results.glob(f"Dataset901_*/*__2d/fold_{fold}/training_log_*.txt")):
        out += [int(m) for m in re.findall(r": Epoch (\d+)\s*$", p.read_text(), re.M)]
    return out


def redone(epochs: list[int]) -> int:
    return len(epochs) - len(set(epochs))


def shell(tmp: Path, a) -> dict:
    env = env_for(tmp, "shell_results")
    res = tmp / "shell_results"
    logs = tmp / "shell_logs"
    logs.mkdir()
    t0 = time.time()

    def fold(k: int, resume: bool) -> subprocess.Popen:
        argv = [sys.executable, "-m", "trainer.external.nnunet_fold", "901", "2d", str(k),
                "-device", "cpu", "--npz", "--epochs", str(a.epochs), "--iterations",
                str(a.iterations), "--val-iterations", "1", "--nnunet-checkpointing"]
        out = open(logs / f"fold{k}.log", "ab")
        return subprocess.Popen(argv + (["--c"] if resume else []), env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)

    procs = {k: fold(k, False) for k in (0, 1)}
    while max(fold_log_epochs(res, 1), default=-1) < a.kill_at:
        time.sleep(0.05)
    os.killpg(procs[1].pid, signal.SIGKILL)
    procs[1].wait()
    procs[1] = fold(1, True)               # the person notices at once and types --c
    for p in procs.values():
        if p.wait() != 0:
            raise SystemExit(f"shell fold failed; see {logs}")
    t_folds = time.time()
    run([str(BIN / "nnUNetv2_find_best_configuration"), "901", "-c", "2d", "-f", "0", "1",
         "-np", "1"], env, logs / "find_best.log")
    pred, final = tmp / "shell_pred", tmp / "shell_final"
    run([str(BIN / "nnUNetv2_predict"), "-i", str(tmp / "raw/Dataset901_Tiny/imagesTs"),
         "-o", str(pred), "-d", "901", "-c", "2d", "-f", "0", "1", "-device", "cpu",
         "-npp", "1", "-nps", "1"], env, logs / "predict.log")
    info = json.loads(next(res.glob("Dataset901_*/inference_information.json")).read_text())
    best = info["best_model_or_ensemble"]
    run([str(BIN / "nnUNetv2_apply_postprocessing"), "-i", str(pred), "-o", str(final),
         "-pp_pkl_file", best["postprocessing_file"], "-np", "1", "-plans_json",
         best["some_plans_file"]], env, logs / "postprocess.log")
    t_end = time.time()
    return {"wall_s": t_end - t0, "epochs_redone": redone(fold_log_epochs(res, 1)),
            "last_fold_to_prediction_s": t_end - t_folds,
            "predictions": len(list(final.glob("*.nii.gz")))}


def foldwatch(tmp: Path, a) -> dict:
    from console.engine.core import Engine
    from console.gpu.nvml import NvmlSampler
    from contracts.jsonio import iter_jsonl
    env = env_for(tmp, "fw_results")
    os.environ.update({k: env[k] for k in ("PYTHONPATH", "OMP_NUM_THREADS")})
    exp = tmp / "fw.yaml"
    exp.write_text(yaml.safe_dump({
        "experiment": "fw", "trainer": "nnunetv2", "results": str(tmp / "fw"),
        "folds": [0, 1], "configurations": {"2d": {}},
        "nnunet": {"dataset": 901, "raw": env["nnUNet_raw"], "preprocessed": env["nnUNet_preprocessed"],
                   "results": env["nnUNet_results"], "plan": False, "epochs": a.epochs,
                   "iterations_per_epoch": a.iterations, "val_iterations": 1, "workers": 0,
                   "processes": 1},
        "devices": {"cpu_slots": 2, "cpu_threads_per_run": 1},
        "watchdog": {"backoff_initial_s": 1, "backoff_max_s": 2}}))
    t0 = time.time()
    os.environ["FOLDWATCH_NO_NVML"] = "1"
    eng = Engine(exp, sampler=NvmlSampler())
    res = tmp / "fw_results"
    killed = False
    try:
        while True:
            snap = eng.poll()
            victim = eng.runs["2d/1"]
            epochs = fold_log_epochs(res, 1)
            if not killed and epochs and max(epochs) >= a.kill_at and victim.handle:
                os.killpg(victim.handle.pid, signal.SIGKILL)
                killed = True
            if snap.finished:
                break
            time.sleep(0.05)
    finally:
        eng.close()
    if not snap.succeeded:
        raise SystemExit(f"foldwatch run failed: {[(r.key, r.state, r.message) for r in snap.runs]}")
    t_end = time.time()
    fold_ends = [e["t"] for k in ("2d/0", "2d/1")
                 for e in iter_jsonl(eng.runs[k].job.run_dir / "metrics.jsonl") if e["event"] == "end"]
    post_end = [e["t"] for e in iter_jsonl(eng.runs["postprocess"].job.run_dir / "metrics.jsonl")
                if e["event"] == "end"][-1]
    return {"wall_s": t_end - t0, "epochs_redone": redone(fold_log_epochs(res, 1)),
            "last_fold_to_prediction_s": post_end - max(fold_ends),
            "predictions": len(list(eng.layout.predictions.glob("*.nii.gz")))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--kill-at", type=int, default=8, help="kill fold 1 when it starts this epoch")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    from nnunet_fixture import make_tiny_dataset
    with tempfile.TemporaryDirectory(prefix="fw-nnunet-bench-") as d:
        tmp = Path(d)
        make_tiny_dataset(tmp / "raw")
        t = time.time()
        plan_env = env_for(tmp, "unused")
        del plan_env["nnUNet_n_proc_DA"]      # nnU-Net's planner fails on 0
        run([str(BIN / "nnUNetv2_plan_and_preprocess"), "-d", "901", "-c", "2d", "-np", "1"],
            plan_env, tmp / "plan.log")
        plan_s = time.time() - t
        rows = {"shell": shell(tmp, a), "foldwatch": foldwatch(tmp, a)}
    print(f"tiny dataset: 8 cases 4x24x24, 2d, folds 0 1, {a.epochs} epochs x {a.iterations} "
          f"iterations, fold 1 killed at epoch {a.kill_at}; plan_and_preprocess {plan_s:.0f}s "
          "(shared)")
    print(f"{'workflow':10} {'wall s':>8} {'epochs redone':>14} {'last fold -> prediction s':>26}")
    for name, r in rows.items():
        print(f"{name:10} {r['wall_s']:8.0f} {r['epochs_redone']:14d} "
              f"{r['last_fold_to_prediction_s']:26.0f}")
    if a.json:
        a.json.write_text(json.dumps({"plan_s": plan_s, **rows}, indent=2))


if __name__ == "__main__":
    main()
