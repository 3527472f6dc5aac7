"""One job's live record in the engine: state, process, watchdog counters, tailed metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from console.backend import Handle
from console.jobs import Job
from console.runmetrics import RunMetrics
from console.tailer import Tailer


@dataclass
class Run:
    job: Job
    state: str = "queued"
    wanted: bool = False           # queued by autostart or launch(); False = not launched
    force: bool = False            # run_stage_now: ignore dependencies once
    handle: Handle | None = None
    device: str | None = None
    restarts: int = 0              # counts toward max_restarts; reset after an epoch
    total_restarts: int = 0
    backoff_until: float | None = None
    overrides: dict = field(default_factory=dict)   # batch_size / grad_accumulation refit
    message: str | None = None
    stop_requested: bool = False
    stalled: bool = False
    gpu_lost: bool = False
    scratch_pending: bool = False
    term_deadline: float | None = None   # SIGKILL the group after this
    starts_at_launch: int = 0
    launched_at: float | None = None
    last_activity: float | None = None
    metrics: RunMetrics = field(default_factory=RunMetrics)
    tailer: Tailer | None = None

    @property
    def key(self) -> str:
        return self.job.key

    def reset_log(self) -> None:
        self.metrics = RunMetrics()
        self.tailer = Tailer(self.job.run_dir / "metrics.jsonl", collapse_iter=True)

    def to_record(self) -> dict:
        h = self.handle
        return {"state": self.state, "wanted": self.wanted, "device": self.device,
                "pid": h.pid if h else None, "create_time": h.create_time if h else None,
                "job_id": h.job_id if h else None, "host": h.host if h else None,
                "restarts": self.restarts, "total_restarts": self.total_restarts,
                "overrides": self.overrides, "message": self.message,
                "backoff_until": self.backoff_until}
