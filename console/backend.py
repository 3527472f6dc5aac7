"""How runs are started and watched: the interface the local (and a future Slurm) backend
implements. The engine decides what to run; a backend only runs it."""

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


@dataclass
class Handle:
    """A launched (or adopted) run: enough to find it again after a console restart."""
    key: str
    pid: int
    create_time: float            # psutil's process start time: pid reuse cannot fool us
    adopted: bool = False
    job_id: str | None = None     # batch systems (Slurm): the job, pid 0
    host: str | None = None


class Backend(Protocol):
    def submit(self, spec: LaunchSpec) -> Handle: ...
    def poll(self, handle: Handle) -> tuple[bool, int | None]:
        """(finished, exit code); exit code None when it cannot be known (adopted runs),
        negative for a signal."""
    def cancel(self, handle: Handle, force: bool = False) -> None: ...  # SIGTERM / SIGKILL
    def adopt(self, key: str, pid: int, create_time: float) -> Handle | None: ...
    def log_paths(self, run_dir: Path) -> dict[str, Path]: ...
    def process_ids(self, handle: Handle) -> set[int]: ...   # the run and its children
