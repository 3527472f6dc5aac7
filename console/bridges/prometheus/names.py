"""Every metric the supervisor exposes: name, type, labels, unit and meaning.

One vocabulary with the console: a metric that shows a column of the runs table takes its
HELP text from that column's definition (console.protocol.vocabulary.COLUMNS), so
docs/console.md, `foldwatch status --json` and Prometheus say the same thing. docs/metrics.md
shows this table (tests/test_prometheus.py keeps it in step), and the Grafana dashboard may
use only these names. No prometheus_client here: the docs and tests read it without it.
"""

from __future__ import annotations

from dataclasses import dataclass

from console.protocol.presence import STALE_S
from console.protocol.vocabulary import COLUMNS

RUN_LABELS = ("experiment", "run", "configuration", "fold", "stage", "host")
GPU_LABELS = ("index", "uuid", "name")
EXPERIMENT_LABELS = ("experiment",)
_DEFINITION = {key: (header, text) for key, header, text in COLUMNS}


@dataclass(frozen=True)
class MetricSpec:
    name: str                   # as exposed: counters end in _total
    type: str                   # gauge or counter
    labels: tuple[str, ...]
    unit: str                   # for people: "seconds", "0-1", "bytes", "1 or 0", ...
    lead: str                   # what this metric is, when it is not a column as such
    column: str | None = None   # the runs-table column whose definition it repeats

    @property
    def help(self) -> str:
        """The HELP line: the metric's own words, then the console column's definition."""
        text = self.lead
        if self.column is not None:
            header, definition = _DEFINITION[self.column]
            said = f"console column '{header}': {definition}"
            text = f"{text}; {said}" if text else said
        return text[0].upper() + text[1:]


def _run(name, unit, column, lead="", type="gauge", extra=()) -> MetricSpec:
    return MetricSpec(f"foldwatch_run_{name}", type, RUN_LABELS + extra, unit, lead, column)


def _gpu(name, unit, lead, labels=GPU_LABELS) -> MetricSpec:
    return MetricSpec(f"foldwatch_gpu_{name}", "gauge", labels, unit, lead)


def _exp(name, unit, lead, extra=()) -> MetricSpec:
    return MetricSpec(f"foldwatch_{name}", "gauge", EXPERIMENT_LABELS + extra, unit, lead)


METRICS: tuple[MetricSpec, ...] = (
    # -- per run (folds and pipeline stages) ---------------------------------------------
    _run("state", "1 or 0", "state", extra=("state",),
         lead="1 for the state the run is in, 0 for every other state (one series per state)"),
    _run("epoch", "epochs (stages: items)", "epoch",
         lead="epochs done (stages: items done), the left side of the Epoch column"),
    _run("epochs", "epochs (stages: items)", "epoch",
         lead="epochs of the run (stages: items), the right side of the Epoch column"),
    _run("val_dice", "0-1", "val_dice"),
    _run("ema_dice", "0-1", "ema"),
    _run("best_ema_dice", "0-1", "best"),
    _run("train_loss", "loss", "loss"),
    _run("samples_per_second", "samples/s", "speed"),
    _run("epoch_seconds", "seconds", "epoch_s"),
    _run("eta_seconds", "seconds", "eta", lead="only while the run is active"),
    _run("last_event_age_seconds", "seconds", "age", lead="only while the run is active"),
    _run("restarts_total", "restarts", "restarts", type="counter",
         lead="restarts since the run was first launched (the watchdog's max_restarts "
              "count goes back to 0 after a new checkpoint; this one does not)"),
    # -- per GPU (NVML, as the GPU panel shows it) ---------------------------------------
    _gpu("utilization_ratio", "0-1", "GPU utilisation: share of the last sample period in "
         "which a kernel ran (NVML), 0-1"),
    _gpu("memory_used_bytes", "bytes", "GPU memory in use, by every process (NVML)"),
    _gpu("memory_total_bytes", "bytes", "GPU memory of the device (NVML)"),
    _gpu("temperature_celsius", "degrees Celsius", "GPU core temperature (NVML)"),
    _gpu("power_watts", "watts", "GPU power draw (NVML)"),
    _gpu("power_limit_watts", "watts", "GPU power limit the driver enforces (NVML)"),
    _gpu("lost", "1 or 0", "1 when NVML reports the GPU lost (fell off the bus); its runs are "
         "rescheduled elsewhere"),
    _gpu("run_info", "1", "1 for each run of this experiment with a process on this GPU: "
         "which run uses which GPU", labels=("index", "uuid", "experiment", "run")),
    _gpu("run_memory_bytes", "bytes", "GPU memory used by the run's processes on this GPU",
         labels=("index", "uuid", "experiment", "run")),
    _gpu("foreign_memory_bytes", "bytes", "GPU memory used by processes that are not this "
         "experiment's runs (another user's job, another experiment)"),
    # -- per experiment (the supervisor) ------------------------------------------------
    _exp("cpu_mode", "1 or 0", "1 when there is no usable NVIDIA GPU and runs go to CPU slots "
         "(no foldwatch_gpu_ series then)"),
    _exp("cpu_slots", "slots", "CPU slots for runs in CPU mode (devices.cpu_slots)"),
    _exp("runs", "runs", "number of runs (folds and stages) in each state",
         extra=("state",)),
    _exp("experiment_finished", "1 or 0", "1 when nothing is queued or active any more"),
    _exp("experiment_succeeded", "1 or 0", "1 when finished and every run completed"),
    _exp("watchdog_enabled", "1 or 0", "1 while the watchdog restarts dead and hung runs"),
    _exp("notices", "notices", "conditions every view shows at the top (damaged state "
         "file, disk full, a missing GPU, metrics port in use)"),
    _exp("supervisor_up", "1 or 0", "1 while the supervisor's loop ticks (last tick at most "
         f"{STALE_S:g} s ago, as every client judges it), 0 when it is stuck; a supervisor "
         "that is gone answers no scrape: Prometheus's own up == 0"),
    _exp("supervisor_last_tick_age_seconds", "seconds", "time since the supervisor's last "
         "tick (it ticks twice a second)"),
)
BY_NAME = {m.name: m for m in METRICS}


def reference_table() -> str:
    """docs/metrics.md's metric table (Markdown)."""
    lines = ["| metric | type | labels | unit | meaning |", "|---|---|---|---|---|"]
    for m in METRICS:
        meaning = m.help.replace("|", "\\|")
        lines.append(f"| `{m.name}` | {m.type} | {', '.join(m.labels)} | {m.unit} | "
                     f"{meaning} |")
    return "\n".join(lines) + "\n"
