"""How runs are started and watched: the interface the local and Slurm backends implement.
The engine decides what to run; a backend only runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass
class LaunchSpec:
    key: str
    argv: list[str]               # full argument list, never through a shell
    run_dir: Path
    env: dict[str, str] = field(default_factory=dict)   # added to the console's environment


def _num(v, kind):
    return kind(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass
class Handle:
    """A launched (or adopted) run: enough to find it again after a console restart.

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


class Backend(Protocol):
    def submit(self, spec: LaunchSpec) -> Handle: ...
    def poll(self, handle: Handle) -> tuple[bool, int | None]:
        """(finished, exit code); exit code None when it cannot be known (adopted runs),
        negative for a signal."""
    def cancel(self, handle: Handle, force: bool = False) -> None: ...  # SIGTERM / SIGKILL
    def adopt(self, key: str, record: dict) -> Handle | None:
        """The live process/job a state.json record (or a run-lock holder record) names,
        or None when it is gone."""
    def describe(self, handle: Handle) -> dict: ...   # free-form status for the UI
    def log_paths(self, run_dir: Path) -> dict[str, Path]: ...
    def process_ids(self, handle: Handle) -> set[int]: ...   # the run and its children
