"""Where every file of an experiment lives (ARCHITECTURE.md section 2).

Both sides build paths only through `Layout`, so the console finds what the trainer wrote.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# File names inside every run folder (fold or stage); spelled here only.
METRICS_FILE = "metrics.jsonl"
STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
CHECKPOINTS_DIR = "checkpoints"
LATEST_CHECKPOINT = "latest.pt"     # what --resume continues from
ORIGIN_FILE = "origin.json"         # a fold imported from another machine (contracts.origin)

# Pipeline stage names (run keys and stage folders); folds are "<configuration>/<k>".
PLAN = "plan"
FIND_BEST = "find-best"
PREDICT = "predict"


def summary_key(label) -> str:
    """A label's or region's key in summary.json and postprocessing.json: "1", or "(1, 2)" and
    "(2,)" for regions (tuples of label values), as nnU-Net's label_or_region_to_key."""
    if isinstance(label, (tuple, list)):
        return str(tuple(int(v) for v in label))
    return str(int(label))


def preprocess_stage(configuration: str) -> str:
    return f"preprocess-{configuration}"


def crossval_stage(configuration: str) -> str:
    return f"crossval-{configuration}"


@dataclass(frozen=True)
class Layout:
    root: Path  # results/<experiment>

    @property
    def splits(self) -> Path:
        return self.root / "splits.json"

    @property
    def fingerprint(self) -> Path:
        return self.root / "fingerprint.json"

    @property
    def plans_dir(self) -> Path:
        return self.root / "plans"

    def plan(self, configuration: str) -> Path:
        return self.plans_dir / f"{configuration}.json"

    def preprocessed(self, configuration: str) -> Path:
        return self.root / "preprocessed" / configuration

    def fold_dir(self, configuration: str, fold: int) -> Path:
        return self.root / configuration / f"fold_{fold}"

    def checkpoints(self, configuration: str, fold: int) -> Path:
        return self.fold_dir(configuration, fold) / CHECKPOINTS_DIR

    def validation(self, configuration: str, fold: int) -> Path:
        return self.fold_dir(configuration, fold) / "validation"

    def previews(self, configuration: str, fold: int) -> Path:
        return run_files(self.fold_dir(configuration, fold))["previews"]

    def progress_png(self, configuration: str, fold: int) -> Path:
        return self.fold_dir(configuration, fold) / "progress.png"

    def progress_overview(self, configuration: str) -> Path:
        """All folds of one configuration overlaid."""
        return self.root / configuration / "progress_folds.png"

    def tensorboard(self, configuration: str, fold: int) -> Path:
        return self.fold_dir(configuration, fold) / "tensorboard"

    @property
    def wandb_dir(self) -> Path:
        """W&B's `dir`: offline runs land in <root>/wandb/offline-run-*."""
        return self.root

    @property
    def exports_dir(self) -> Path:
        """The exporter's cursors, one JSON file per run and sink."""
        return self.console_dir / "exports"

    @property
    def notify_state(self) -> Path:
        return self.console_dir / "notify.json"

    @property
    def notify_log(self) -> Path:
        return self.console_dir / "notify.jsonl"

    def crossval(self, configuration: str) -> Path:
        return self.root / configuration / "crossval"

    def ensemble(self, members: list[str] | tuple[str, ...]) -> Path:
        return self.root / "ensembles" / "+".join(members)

    @property
    def best_configuration(self) -> Path:
        return self.root / "best_configuration.json"

    @property
    def postprocessing(self) -> Path:
        return self.root / "postprocessing.json"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    def stage_dir(self, stage: str) -> Path:
        """Run folder of a pipeline stage that is not a fold: metrics.jsonl, stdout/stderr.log.

        Stage names: preprocess-<configuration>, crossval-<configuration>, find-best, predict.
        """
        return self.root / "stages" / stage

    @property
    def console_dir(self) -> Path:
        return self.root / "console"

    @property
    def state(self) -> Path:
        return self.console_dir / "state.json"

    @property
    def console_events(self) -> Path:
        return self.console_dir / "events.jsonl"

    @property
    def lock(self) -> Path:
        return self.console_dir / "lock"

    @property
    def imports_dir(self) -> Path:
        """`foldwatch import`: its lock, the staging folders and the journal of the commit in
        progress (a crash is finished or undone by the next import; docs/transfer.md)."""
        return self.console_dir / "imports"

    def claim(self, key: str) -> Path:
        """Team split (--runs): the lock a console holds on one run or stage it owns."""
        return self.console_dir / "claims" / f"{key}.lock"

    def team_console_dir(self, console_id: str) -> Path:
        """Team split: one supervisor's own folder (host + its runs): state.json, events..."""
        return self.console_dir / "consoles" / console_id

    def supervisor_home(self, console_id: str | None = None) -> "SupervisorHome":
        """The folder of the experiment's supervisor (of one team member's, with an id)."""
        return SupervisorHome(self.team_console_dir(console_id) if console_id
                              else self.console_dir)


@dataclass(frozen=True)
class SupervisorHome:
    """What one supervisor keeps, and what its clients read and write (docs/console-engine.md,
    "Client protocol"): results/<exp>/console/, or console/consoles/<id>/ in a team split."""
    dir: Path

    @property
    def lock(self) -> Path:
        """flock held by the supervisor for its whole life; content: its holder record."""
        return self.dir / "supervisor.lock"

    @property
    def snapshot(self) -> Path:
        """What every client shows, rewritten (atomically) on every tick, with a heartbeat."""
        return self.dir / "snapshot.json"

    @property
    def requests(self) -> Path:
        """Clients' requests, one file each; the supervisor answers in `replies`."""
        return self.dir / "requests"

    @property
    def replies(self) -> Path:
        return self.dir / "replies"

    @property
    def intent(self) -> Path:
        """Whether supervision is wanted (`up`) or not (`down`, finished), by whom, when."""
        return self.dir / "supervision.json"

    @property
    def environment(self) -> Path:
        """The environment `foldwatch up` started the supervisor with (a restart reuses it)."""
        return self.dir / "supervisor-env.json"

    @property
    def log(self) -> Path:
        return self.dir / "supervisor.log"

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    @property
    def events(self) -> Path:
        return self.dir / "events.jsonl"


def run_files(run_dir: Path) -> dict[str, Path]:
    """The files every run folder (fold or stage) has (folds also `latest`)."""
    return {
        "metrics": run_dir / METRICS_FILE,
        "stdout": run_dir / STDOUT_FILE,
        "stderr": run_dir / STDERR_FILE,
        "checkpoints": run_dir / CHECKPOINTS_DIR,
        "latest": run_dir / CHECKPOINTS_DIR / LATEST_CHECKPOINT,
        "previews": run_dir / "previews",     # a fold's epoch previews (docs/pictures.md)
        "origin": run_dir / ORIGIN_FILE,      # imported folds: where they were trained
        # Slurm backend: the submission record (intent, then job id) and the batch script.
        "slurm_job": run_dir / "slurm-job.json",
        "slurm_script": run_dir / "slurm-job.sh",
    }
