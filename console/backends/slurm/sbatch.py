"""The batch script of one run: #SBATCH options from the `slurm:` section, then the same
trainer command line as the local backend, exec'd so Slurm's signals reach the trainer."""

from __future__ import annotations

import re
import secrets
import shlex
from pathlib import Path

from contracts.slurm_settings import Slurm
from contracts.layout import run_files

# Set by the engine for local runs; on Slurm the gres allocation decides the GPUs.
_NOT_EXPORTED = ("CUDA_VISIBLE_DEVICES",)


def job_name(cfg: Slurm, experiment: str, key: str, token: str | None = None) -> str:
    """A name unique to one submission: `fw-demo-2d_0-1a2b3c` (squeue finds it again)."""
    token = token or secrets.token_hex(3)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{experiment}-{key}")
    return f"{cfg.job_name_prefix}{safe}-{token}"


def sbatch_options(cfg: Slurm, *, name: str, run_dir: Path, workdir: Path,
                   needs_gpu: bool) -> list[str]:
    """The #SBATCH options of one run, in the order they appear in the script."""
    logs = run_files(run_dir)
    opts = [f"--job-name={name}",
            f"--output={logs['stdout']}", f"--error={logs['stderr']}", "--open-mode=append",
            f"--chdir={workdir}", f"--time={cfg.time_limit}",
            "--nodes=1", "--ntasks=1", f"--cpus-per-task={cfg.cpus_per_run}",
            # The batch shell is the trainer (exec below): B: signals it, not job steps.
            f"--signal=B:USR2@{cfg.signal_lead_s}",
            # foldwatch resubmits with --resume itself; a Slurm requeue would rerun the
            # script as it was (the script adds --resume then, see requeue_guard).
            "--no-requeue"]
    for flag, value in (("--partition", cfg.partition), ("--account", cfg.account),
                        ("--qos", cfg.qos), ("--mem", cfg.mem_per_run)):
        if value:
            opts.append(f"{flag}={value}")
    if needs_gpu and cfg.gpus_per_run:
        kind = f"gpu:{cfg.gpu_type}" if cfg.gpu_type else "gpu"
        opts.append(f"--gres={kind}:{cfg.gpus_per_run}")
    return opts + list(cfg.extra_sbatch)


def batch_script(argv: list[str], options: list[str], env: dict[str, str], *,
                 fold: bool, key: str) -> str:
    """bash script text: options, explicit environment, requeue guard, exec the trainer."""
    lines = ["#!/bin/bash", f"# foldwatch run {key}: written by foldwatch for each submission."]
    lines += [f"#SBATCH {o}" for o in options]
    lines.append("")
    for k, v in sorted(env.items()):
        if k in _NOT_EXPORTED or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            continue
        if k == "FOLDWATCH_CPU_THREADS":
            v = "${SLURM_CPUS_PER_TASK:-%s}" % v
            lines.append(f'export {k}="{v}"')
            continue
        lines.append(f"export {k}={shlex.quote(v)}")
    lines.append("cmd=(" + " ".join(shlex.quote(a) for a in argv) + ")")
    if fold and "--resume" not in argv:
        # A site that requeues anyway (preemption with requeue): carry on from latest.pt.
        lines.append('if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then cmd+=(--resume); fi')
    lines.append('echo "foldwatch: job ${SLURM_JOB_ID} on $(hostname) at $(date -Is)" >&2')
    # Slurm may send the --signal up to 60 s early: ignored until the trainer installs its
    # handler (an ignored signal stays ignored across exec; a handled one would not).
    lines.append("trap '' USR2")
    lines.append('exec "${cmd[@]}"')
    return "\n".join(lines) + "\n"
