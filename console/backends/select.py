"""What the engine needs to know about where runs execute: the backend an experiment asks
for, and the cluster view (job ids, pending reasons, nodes, free GPUs) that replaces the
NVML gauges when the runs are Slurm jobs."""

from __future__ import annotations

from console.backends.base import Backend
from console.protocol.fmt import duration
from contracts.experiment import Experiment


def make_backend(exp: Experiment, *, read_only: bool = False) -> Backend:
    """The backend named by the experiment's `backend:` key (imports only what it needs)."""
    if exp.backend == "slurm":
        import shutil
        from console.backends.slurm.backend import SlurmBackend
        missing = [c for c in ("sbatch", "squeue", "scancel", "scontrol") if not shutil.which(c)]
        if missing and not read_only:
            from contracts.errors import ConfigError
            raise ConfigError(
                f"{exp.source or 'the experiment'}: backend: slurm, but {', '.join(missing)} "
                "not found on PATH. Run foldwatch on the cluster's login node (where sbatch "
                "works), or set backend: local to train on this machine.")
        return SlurmBackend(exp)
    from console.backends.local import LocalBackend
    return LocalBackend()


def job_note(info: dict) -> str | None:
    """`job 12 PENDING (Resources), 3m10s in queue` / `job 12 RUNNING on node7`."""
    if not info or not info.get("job_id"):
        return None
    state = info.get("state") or "submitted"
    text = f"job {info['job_id']} {state}"
    if info.get("reason"):
        text += f" ({info['reason']})"
    if info.get("node"):
        text += f" on {info['node']}"
    if state == "PENDING" and info.get("queue_s") is not None:
        text += f", {duration(info['queue_s'])} in queue"
    elif info.get("queue_s") is not None:
        text += f" (queued {duration(info['queue_s'])})"
    return text


def job_device(info: dict) -> str | None:
    """The runs table's device column for a job: its node, or `queue` while pending."""
    if not info or not info.get("job_id"):
        return None
    return info.get("node") or "queue"
