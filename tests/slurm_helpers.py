"""The real one-node Slurm cluster for the Slurm tests (tests/slurm_cluster.sh), and an
experiment that runs on it. Tests skip, saying why, when the cluster cannot start."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from engine_helpers import write_experiment

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "slurm_cluster.sh"
STATE_DIR = os.environ.get("FOLDWATCH_SLURM_DIR", "/tmp/foldwatch-slurm")


def _cluster(action: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), action, STATE_DIR], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="session")
def slurm_cluster():
    """SLURM_CONF of a running test cluster (started here, stopped at the end if we did).

    Under xdist every Slurm test runs on one worker (tests/conftest.py groups them); the
    lock keeps two sessions that start at once from both starting daemons."""
    from filelock import FileLock
    with FileLock(f"{STATE_DIR}.lock"):
        was_up = _cluster("status").returncode == 0
        p = _cluster("up")
    if p.returncode != 0:
        lines = (p.stderr or p.stdout).strip().splitlines()
        pytest.skip(lines[-1] if lines else f"tests/slurm_cluster.sh up failed ({p.returncode})")
    conf = next(line.split("=", 1)[1] for line in p.stdout.splitlines()
                if line.startswith("SLURM_CONF="))
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield conf
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old
    if not was_up:
        _cluster("down")


@pytest.fixture
def no_leftover_jobs(slurm_cluster):
    """After each test, cancel the jobs it left behind (a failed test leaves runs running)."""
    yield
    live = [r[0] for r in squeue_names("fw") if r[2] in ("PENDING", "RUNNING", "CONFIGURING")]
    if live:
        subprocess.run(["scancel", *live], capture_output=True)


def slurm_experiment(tmp: Path, *, slurm: dict | None = None, **kwargs) -> Path:
    """The engine tests' tiny experiment with `backend: slurm` and test-sized jobs."""
    path = write_experiment(tmp, **kwargs)
    data = yaml.safe_load(path.read_text())
    data["backend"] = "slurm"
    data["slurm"] = {"gpus_per_run": 0, "cpus_per_run": 1, "mem_per_run": "500M",
                     "time_limit": "10", "poll_interval_s": 0.5, **(slurm or {})}
    path.write_text(yaml.safe_dump(data))
    return path


def squeue_names(prefix: str = "fw-") -> list[tuple[str, str, str]]:
    """(job id, name, state) of every job squeue knows whose name starts with prefix."""
    out = subprocess.run(["squeue", "-h", "--states=all", "-o", "%i|%j|%T"], check=True,
                         capture_output=True, text=True).stdout
    rows = [tuple(line.split("|")) for line in out.splitlines() if line.count("|") == 2]
    return [r for r in rows if r[1].startswith(prefix)]
