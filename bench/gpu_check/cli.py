"""`python -m bench.gpu_check`: the arguments, the mode (GPU or dry run), the report's header;
the groups themselves run in runner.py."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .context import ROOT, num
from .groups import GROUPS
from .machine import DEFAULT_SITE, WHEELS, detect_gpu, ensure_packages
from .runner import Runner, run_group

DATA_GROUPS = {g.name for g in GROUPS if g.needs_data}


def arguments() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu_check",
                                 description="The GPU acceptance run (docs/training.md); "
                                 "without a GPU, the dry run.")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "gpu-check",
                    help="where gpu-check.json and gpu-check.md go (default results/gpu-check)")
    ap.add_argument("--work", type=Path, help="datasets and runs (default: a new temp folder)")
    ap.add_argument("--steps", help="comma-separated groups: " + ", ".join(g.name for g in GROUPS))
    ap.add_argument("--dry-run", action="store_true",
                    help="the CPU-meaningful parts with tiny sizes, even on a GPU machine")
    ap.add_argument("--budget-s", type=float, help="overall time limit (default 480 on a GPU, "
                    "600 for the dry run)")
    ap.add_argument("--gpu", type=int, default=0, help="NVML index of the GPU to use (default 0)")
    ap.add_argument("--wheels", type=Path, default=WHEELS,
                    help="wheels to install what is missing from (default .whl/)")
    ap.add_argument("--site", type=Path, default=DEFAULT_SITE,
                    help=f"where wheels from .whl/ are installed (default {DEFAULT_SITE})")
    ap.add_argument("--parallel", type=int, default=3,
                    help="dry run only: groups run this many at a time (default 3: most of a "
                    "group's time is waiting for its runs)")
    ap.add_argument("--nnunet-epochs", type=int, default=8)
    ap.add_argument("--nnunet-iterations", type=int, default=50)
    ap.add_argument("--run-group", help=argparse.SUPPRESS)
    ap.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    return ap


def selected(steps: str | None) -> set[str]:
    """The groups --steps names (every group by default), with the dataset when one reads it."""
    names = {g.name for g in GROUPS}
    wanted = names if not steps else {x.strip() for x in steps.split(",") if x.strip()}
    unknown = wanted - names
    if unknown:
        raise SystemExit(f"gpu_check: --steps {','.join(sorted(unknown))}: no such group; groups "
                         "are " + ", ".join(g.name for g in GROUPS))
    return wanted | ({"dataset"} if wanted & DATA_GROUPS else set())


def main(argv: list[str] | None = None) -> int:
    a = arguments().parse_args(argv)
    if a.run_group:
        run_group(a.run_group, json.loads(a.state.read_text()))
        return 0
    wanted = selected(a.steps)
    ensure_packages(a.wheels, a.site)
    # the budget counts from the first start, the installation of carried wheels included
    t_start = time.monotonic() - (time.time() - float(os.environ.get("FOLDWATCH_GPU_CHECK_T0")
                                                      or time.time()))
    present, gpu_name, nvml_message = detect_gpu(a.gpu)
    gpu = present and not a.dry_run
    skip_why = None if gpu else ("dry run asked for (--dry-run)" if a.dry_run
                                 else f"no NVIDIA GPU (NVML: {nvml_message})")
    budget = a.budget_s or (480.0 if gpu else 600.0)
    work = (a.work or Path(tempfile.mkdtemp(prefix="foldwatch-gpu-check-"))).resolve()
    shutil.rmtree(work / "steps", ignore_errors=True)
    (work / "steps").mkdir(parents=True)
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report = {"schema": 1, "mode": "gpu" if gpu else "dry-run", "mode_reason": skip_why,
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "budget_s": budget,
              "argv": sys.argv[1:], "work": str(work),
              "machine": {"gpu": gpu_name, "gpu_index": a.gpu if gpu else None,
                          "cores": len(os.sched_getaffinity(0)), "host": os.uname().nodename},
              "install_s": num(os.environ.get("FOLDWATCH_GPU_CHECK_INSTALL_S")),
              "steps": []}
    print(f"foldwatch GPU check: {report['mode']}" + (f" ({skip_why})" if skip_why else
          f" on GPU {a.gpu}: {gpu_name}") + f"; budget {budget:.0f} s; work {work}", flush=True)
    state = {"work": str(work), "mode": report["mode"], "skip_why": skip_why, "gpu": a.gpu,
             "forced_dry": a.dry_run and present, "nnunet_epochs": a.nnunet_epochs,
             "nnunet_iterations": a.nnunet_iterations}
    runner = Runner(report, state, wanted, out, budget=budget, t_start=t_start,
                    parallel=1 if gpu else max(1, a.parallel))
    ok = runner.run()
    print(f"wrote {out / 'gpu-check.json'}, {out / 'gpu-check.md'} and the logs "
          f"({report['elapsed_s']:.0f} s)", flush=True)
    return 0 if ok else 1
