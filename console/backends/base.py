"""How runs are started and watched: the `Backend` the local and Slurm backends are, with
every optional capability declared (and its default) here, and one `BackendError`.
The engine decides what to run; a backend only runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from contracts.runlock import LAUNCH_TOKEN_ENV, RUN_DIR_ENV  # noqa: F401  (re-exported)


class BackendError(RuntimeError):
    """A backend could not do what it was asked: its command and its message.
    `permanent`: the request itself is wrong (a partition, a resource), retrying cannot help."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass
class LaunchSpec:
    key: str
    argv: list[str]               # full argument list, never through a shell
    run_dir: Path
    env: dict[str, str] = field(default_factory=dict)   # added to the supervisor's environment
    needs_gpu: bool = False       # the job uses a GPU (the trainer kind's job graph says)
    fold: bool = False            # a cross-validation fold (not a pipeline stage)
    token: str | None = None      # the launch intent's token, also in the child's environment


def _num(v, kind):
    return kind(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass
class Handle:
    """A launched (or adopted) run: enough to find it again after a supervisor restart.

    Local runs: pid + create_time (psutil's process start time, so pid reuse cannot fool
    us). Batch systems: job_id (and the pid/host once known, else pid 0).
    """
    key: str
    pid: int
    create_time: float
    adopted: bool = False
    job_id: str | None = None
    host: str | None = None

    RECORD_KEYS = ("pid", "create_time", "job_id", "host")

    def to_record(self) -> dict:
        """The fields state.json keeps for this handle (see Handle.from_record)."""
        return {"pid": self.pid, "create_time": self.create_time, "job_id": self.job_id,
                "host": self.host}

    @staticmethod
    def empty_record() -> dict:
        return dict.fromkeys(Handle.RECORD_KEYS)

    @classmethod
    def from_record(cls, key: str, record: dict, adopted: bool = True) -> "Handle | None":
        """A handle from a state.json run record; None when it names no process or job."""
        pid, ct = _num(record.get("pid"), int), _num(record.get("create_time"), float)
        job_id = record.get("job_id")
        job_id = str(job_id) if isinstance(job_id, (str, int)) and job_id != "" else None
        host = record.get("host") if isinstance(record.get("host"), str) else None
        if job_id is None and not (pid and ct):
            return None
        return cls(key, pid or 0, ct or 0.0, adopted=adopted, job_id=job_id, host=host)


class Backend:
    """What the engine asks of a backend. Subclasses implement the five verbs; the
    capabilities below have the defaults of a backend that runs processes itself."""

    queues_runs: bool = False     # it queues runs itself (Slurm): the engine submits every ready one
    error: str | None = None      # its last failed query, for the views

    def submit(self, spec: LaunchSpec) -> Handle:
        """Start it; BackendError (or OSError for a program that cannot start) if not."""
        raise NotImplementedError

    def poll(self, handle: Handle) -> tuple[bool, int | None]:
        """(finished, exit code); exit code None when it cannot be known (adopted runs),
        negative for a signal."""
        raise NotImplementedError

    def cancel(self, handle: Handle, force: bool = False) -> None:
        """SIGTERM (graceful: the trainer checkpoints) or, forced, SIGKILL."""
        raise NotImplementedError

    def adopt(self, key: str, record: dict, run_dir: Path) -> Handle | None:
        """The live process/job a state.json record (or a run-lock holder record) names,
        or None when it is gone."""
        raise NotImplementedError

    def describe(self, handle: Handle) -> dict:
        """Free-form status for the views."""
        raise NotImplementedError

    def find_launch(self, key: str, token: str, run_dir: Path) -> Handle | None:
        """A process started for a launch whose pid was never recorded (the supervisor died
        in between): found by the launch token it carries. None: no such process."""
        return None

    def process_ids(self, handle: Handle) -> set[int]:
        """The run's process and its children (GPU attribution); empty when remote."""
        return set()

    def is_pending(self, handle: Handle) -> bool:
        """Waiting in a queue: not started, so not stalled either."""
        return False

    def ended_by_cluster(self, handle: Handle) -> str | None:
        """timeout / preempted / node_fail / cancelled when the cluster ended it, else None."""
        return None

    def partition_view(self) -> dict | None:
        """The cluster's partition for the header (free GPUs/CPUs), None when local."""
        return None

    def close(self) -> None:
        """Runs outlive the supervisor: nothing of theirs is touched."""
