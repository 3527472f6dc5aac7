"""A tiny preprocessed experiment written directly in the BRIEF's on-disk format.

Used by the trainer tests so that they exercise training without the planning and
preprocessing stages: plan, splits.json, `<case>_data.npy`, `<case>_seg.npy`, `<case>.json`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from trainer.planning.plans import ChannelNorm, Plan

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (16, 32, 32)


def make_case(rng: np.random.Generator, shape=SHAPE):
    """A noisy image with a bright ellipsoid (label 1) and a small dark blob (label 2)."""
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    c = [rng.uniform(0.35, 0.65) * n for n in shape]
    r = [rng.uniform(0.15, 0.25) * n for n in shape]
    big = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1
    c2 = [rng.uniform(0.2, 0.8) * n for n in shape]
    small = ((z - c2[0]) / 2.5) ** 2 + ((y - c2[1]) / 3.5) ** 2 + ((x - c2[2]) / 3.5) ** 2 <= 1
    seg = np.zeros(shape, np.int8)
    seg[big] = 1
    seg[small & ~big] = 2
    img = rng.normal(0, 0.3, shape) + 1.5 * (seg == 1) - 1.5 * (seg == 2)
    return img[None].astype(np.float32), seg


def write_experiment(tmp: Path, *, n_cases=6, dim=3, epochs=2, ipe=4, val_iterations=1,
                     batch_size=2, num_workers=1, extra_cfg: dict | None = None) -> Path:
    """Experiment YAML + results/<exp>/{plans, splits.json, preprocessed/<cfg>}; returns the YAML."""
    name = "2d" if dim == 2 else "3d_fullres"
    root = tmp / "results" / "tiny"
    pre = root / "preprocessed" / name
    pre.mkdir(parents=True)
    rng = np.random.default_rng(0)
    cases = [f"case_{i:03d}" for i in range(n_cases)]
    for case in cases:
        img, seg = make_case(rng)
        np.save(pre / f"{case}_data.npy", img)
        np.save(pre / f"{case}_seg.npy", seg)
        locs = {str(k): np.argwhere(seg == k)[:1000].tolist() for k in (1, 2)}
        props = {"spacing": [1.0, 1.0, 1.0], "shape": list(SHAPE), "class_locations": locs}
        (pre / f"{case}.json").write_text(json.dumps(props))
    if dim == 3:
        kernels, strides, patch = [[1, 3, 3], [3, 3, 3], [3, 3, 3]], [[1, 1, 1], [1, 2, 2], [2, 2, 2]], [16, 32, 32]
    else:
        kernels, strides, patch = [[3, 3], [3, 3], [3, 3]], [[1, 1], [2, 2], [2, 2]], [32, 32]
    plan = Plan(configuration=name, dim=dim, spacing=[1.0, 1.0, 1.0], patch_size=patch,
                batch_size=batch_size, median_shape=list(SHAPE), kernel_sizes=kernels,
                strides=strides, filters=[4, 8, 16],
                normalization=[ChannelNorm("CT", "zscore")],
                labels={"background": 0, "organ": 1, "lesion": 2}, channel_names=["CT"])
    plan.save(root / "plans" / f"{name}.json")
    splits = [{"train": [c for j, c in enumerate(cases) if j % 3 != k % 3],
               "val": [c for j, c in enumerate(cases) if j % 3 == k % 3]} for k in range(5)]
    (root / "splits.json").write_text(json.dumps(splits))
    cfg = {"patch_size": patch, "batch_size": batch_size, "epochs": epochs,
           "iterations_per_epoch": ipe, "val_iterations": val_iterations, "base_features": 4,
           "max_features": 16, "num_workers": num_workers, "tta_mirroring": False}
    cfg.update(extra_cfg or {})
    exp = {"experiment": "tiny", "dataset": "data", "results": "results",
           "configurations": {name: cfg}}
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def trainer_env(**extra: str) -> dict:
    # progress.png costs CPU seconds per trainer: only the tests that look at it draw it
    env = dict(os.environ, OMP_NUM_THREADS="1", FOLDWATCH_CPU_THREADS="1",
               PYTHONPATH=str(ROOT), FOLDWATCH_ITER_LOG_S="0", FOLDWATCH_PROGRESS_PLOT="0")
    env.update(extra)
    return env


def train_cmd(exp: Path, configuration="3d_fullres", fold=0, *more: str) -> list[str]:
    return [sys.executable, "-m", "trainer", "train", "--experiment", str(exp),
            "--configuration", configuration, "--fold", str(fold), *more]


def run_train(exp: Path, *more: str, configuration="3d_fullres", fold=0, timeout=300,
              env: dict | None = None):
    return subprocess.run(train_cmd(exp, configuration, fold, *more), cwd=ROOT,
                          env=trainer_env(**(env or {})), capture_output=True, text=True,
                          timeout=timeout)


def trainer_here(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m trainer ARGS` without the interpreter start (torch + MONAI imports, ~5 CPU-s
    a run): the same entry point (`trainer.cli.main`, whose return value `python -m trainer`
    exits with) in this process, under trainer_env's variables, stdout/stderr captured;
    argparse's SystemExit becomes the return code as it would in a process. For tests about
    what the trainer decides, not about it being a process; the torch thread count, the
    variables and the iteration-log interval are put back afterwards."""
    import contextlib
    import io

    import torch

    from trainer.cli import main
    from trainer.training import loop

    argv = [str(a) for a in args]
    wanted = {k: v for k, v in trainer_env(**(env or {})).items() if os.environ.get(k) != v}
    saved = {k: os.environ.get(k) for k in wanted}
    threads, iter_log = torch.get_num_threads(), loop.ITER_LOG_INTERVAL_S
    out, err = io.StringIO(), io.StringIO()
    os.environ.update(wanted)
    loop.ITER_LOG_INTERVAL_S = float(os.environ["FOLDWATCH_ITER_LOG_S"])  # read at import
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        torch.set_num_threads(threads)
        loop.ITER_LOG_INTERVAL_S = iter_log
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def run_train_here(exp: Path, *more: str, configuration="3d_fullres", fold=0,
                   env: dict | None = None) -> subprocess.CompletedProcess:
    """run_train in this process (trainer_here)."""
    return trainer_here("train", "--experiment", exp, "--configuration", configuration,
                        "--fold", fold, *more, env=env)


def train_in_process(exp: Path, configuration="3d_fullres", fold=0, *more: str) -> int:
    """The real `train` command in this process: no interpreter start (~20 s on a busy
    2-core machine); the torch thread count it sets is put back afterwards."""
    import torch

    from trainer.cli import main
    threads = torch.get_num_threads()
    plots = os.environ.get("FOLDWATCH_PROGRESS_PLOT")
    os.environ["FOLDWATCH_PROGRESS_PLOT"] = plots or "0"     # as trainer_env: off unless asked
    try:
        return main(["train", "--experiment", str(exp), "--configuration", configuration,
                     "--fold", str(fold), *more])
    finally:
        torch.set_num_threads(threads)
        if plots is None:
            os.environ.pop("FOLDWATCH_PROGRESS_PLOT", None)
