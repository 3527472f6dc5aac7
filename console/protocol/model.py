"""What a supervisor shows its clients (the Textual console, headless lines, `foldwatch
status`, the browser view, the metrics), and the actions they may ask of it.

Plain data, rebuilt by `Engine.poll()` on every tick and sent to clients as JSON
(console.protocol.snapshots, console.protocol.codec). Clients read these and call the
actions of `EngineControl` (console.protocol.client sends them to the supervisor); they
never touch processes themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

RunState = Literal["queued", "starting", "running", "stalled", "backoff", "waiting",
                   "completed", "failed", "stopped", "dead"]
RUN_STATES: tuple[str, ...] = ("queued", "starting", "running", "stalled", "backoff", "waiting",
                               "completed", "failed", "stopped")
# "dead" is no engine state: a client shows it when no supervisor is alive and a run's
# recorded process is gone (nobody has judged the exit yet).
ACTIVE_STATES = frozenset({"starting", "running", "stalled"})
FINAL_STATES = frozenset({"completed", "failed", "stopped"})


@dataclass
class EpochPoint:
    """One epoch of a fold, for charts (downsampled when a run is long)."""
    epoch: int
    train_loss: float | None
    val_loss: float | None
    val_dice: float | None
    ema_dice: float | None
    lr: float | None
    val_dice_per_class: list[float | None] | None = None
    epoch_s: float | None = None
    data_wait_frac: float | None = None
    peak_mem_mb: float | None = None
    samples_per_s: float | None = None     # effective batch x iterations / epoch_s


@dataclass
class RunView:
    key: str                      # "3d_fullres/0" for folds, "crossval-3d_fullres" etc. for stages
    kind: Literal["fold", "stage"]
    label: str                    # what the table shows in its first column
    state: RunState
    configuration: str | None = None
    fold: int | None = None
    device: str | None = None     # "gpu0", "cpu1", None while queued
    pid: int | None = None
    epoch: int | None = None      # last completed epoch (0-based) + 1, i.e. epochs done
    epochs: int | None = None
    iteration: int | None = None
    iterations_per_epoch: int | None = None
    samples_per_s: float | None = None
    train_loss: float | None = None
    val_dice: float | None = None
    ema_dice: float | None = None
    best_dice: float | None = None
    eta_s: float | None = None
    restarts: int = 0
    last_event_age_s: float | None = None
    progress: tuple[int, int] | None = None   # (done, total) for stages and validation
    message: str | None = None                # last error or watchdog reason
    depends_on: tuple[str, ...] = ()
    epoch_s: float | None = None              # the last epoch's wall time
    data_wait_frac: float | None = None       # the last epoch's share of waiting for batches
    peak_mem_mb: float | None = None          # the last epoch's peak memory
    val_dice_per_class: list[float | None] | None = None   # the last pseudo-Dice per class
    run_dir: str | None = None                # the run's folder (metrics.jsonl, *.log)
    outcome: str | None = None                # a finished stage's result, one line
    outcome_dice: float | None = None         # its headline foreground Dice (val Dice column)
    outcome_model: str | None = None          # the chosen model it is about, "2d+3d_fullres"
    outcome_cases: int | None = None          # the test cases it produced or evaluated
    run_now: bool = False                     # the user asked for it ahead of the queue
    job: dict | None = None                   # batch job (Slurm): job_id, state, reason, node
    host: str | None = None                   # where its process runs
    pid_started: float | None = None          # its process's start time (pid reuse check)
    origin: str | None = None                 # imported from another machine: "HOST, DATE"


@dataclass
class GpuProcessView:
    pid: int
    used_mb: float | None
    run_key: str | None           # ours: which run; None: foreign
    user: str | None = None       # the process owner (psutil), when it can be seen
    command: str | None = None    # its command line, shortened


@dataclass
class GpuView:
    index: int
    name: str | None
    uuid: str | None
    util_pct: float | None        # None = "n/a"
    mem_used_mb: float | None
    mem_total_mb: float | None
    temp_c: float | None
    power_w: float | None
    power_limit_w: float | None
    lost: bool = False
    selected: bool = True         # may the scheduler use it
    processes: list[GpuProcessView] = field(default_factory=list)
    util_history: list[float] = field(default_factory=list)
    mem_history: list[float] = field(default_factory=list)


@dataclass
class Decision:
    """One watchdog/scheduler decision, as appended to console/events.jsonl."""
    t: float
    run_key: str | None
    action: str                   # launch, restart, give_up, stall, stop, kill, adopt, ...
    reason: str


@dataclass
class ScoreView:
    name: str                                  # "2d", "2d+3d_fullres", "test set"
    foreground_dice: float | None
    per_class: dict[str, float | None] = field(default_factory=dict)   # class name -> Dice
    cases: int | None = None
    path: str = ""


@dataclass
class ResultsView:
    """What the finished pipeline stages wrote (console.engine.results reads it)."""
    root: str
    configurations: list[ScoreView] = field(default_factory=list)    # cross-validation
    ensembles: list[ScoreView] = field(default_factory=list)
    chosen: list[str] | None = None            # find-best's winner (one or several configs)
    chosen_dice: float | None = None
    best_path: str | None = None
    postprocessing: str | None = None          # the decision in words
    postprocessing_dice: tuple[float | None, float | None] | None = None   # before, after
    postprocessing_path: str | None = None
    predicted_cases: int | None = None
    predictions_dir: str | None = None
    test: ScoreView | None = None
    how_to_predict: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.configurations or self.chosen or self.predicted_cases)


@dataclass
class SupervisorView:
    """The experiment's supervisor as a client sees it (console.protocol.presence)."""
    state: str                    # alive, starting, not responding, down, never
    pid: int | None = None
    host: str | None = None
    started: float | None = None
    heartbeat: float | None = None
    since: float | None = None    # down or silent since
    reason: str | None = None     # why it ended (down, finished, a signal)
    text: str = ""                # one line for people, with what to do


@dataclass
class Snapshot:
    time: float
    runs: list[RunView]
    gpus: list[GpuView]
    cpu_mode: bool                # no usable NVIDIA GPU: runs go to CPU slots
    cpu_slots: int
    nvml_message: str | None      # "no NVIDIA driver", "driver/library mismatch", ...
    watchdog_enabled: bool
    read_only: bool
    finished: bool                # nothing queued or active remains
    succeeded: bool               # finished and every run completed
    decisions: list[Decision] = field(default_factory=list)   # most recent last
    # Conditions the user must see (damaged state file, disk full, a missing GPU), loudest first
    notices: list[str] = field(default_factory=list)
    results: ResultsView | None = None        # what the finished stages wrote (console.engine.results)
    supervisor: SupervisorView | None = None  # filled by the client: who supervises, if anyone
    class_names: list[str] = field(default_factory=list)   # foreground classes, label order
    nvml_problems: list[str] = field(default_factory=list)  # NVML calls that failed, and why
    cluster: dict | None = None   # Slurm: partition, free GPUs/CPUs (Backend.partition_view)


class EngineControl(Protocol):
    """The actions a client may call: the engine itself implements them, and
    console.protocol.client.SupervisorClient asks a supervisor for them. All return quickly;
    work happens on poll(). Each action returns what it really did, in one sentence, for
    the toast."""

    def poll(self) -> Snapshot: ...
    def epoch_history(self, key: str) -> list[EpochPoint]: ...
    def stderr_tail(self, key: str, lines: int = 40) -> list[str]: ...
    def checkpoints(self, key: str) -> list[tuple[str, float]]: ...   # (path, mtime)
    def launch(self, configurations: list[str], folds: list[int],
               gpus: list[int] | None = None) -> str: ...
    def stop(self, key: str, final: bool = True) -> str: ...   # SIGTERM, grace, SIGKILL
    # final: the user's wish, which later consoles keep (False: --stop-on-exit)
    def kill(self, key: str) -> str: ...
    def resume(self, key: str) -> str: ...
    def restart_from_scratch(self, key: str) -> str: ...  # moves old outputs aside, never deletes
    def set_watchdog(self, enabled: bool) -> str: ...
    def select_gpus(self, gpus: list[int] | None) -> str: ...    # None = all
    def run_stage_now(self, stage: str) -> str: ...       # "crossval-2d", "find-best", "predict"
    def stop_all(self, final: bool = True) -> str: ...
    def close(self) -> None: ...                          # leaves runs running
