"""The metrics, built at scrape time from the latest snapshot the supervisor published.

The supervisor's loop only swaps one reference per tick (`update`); the families are made
when Prometheus asks, in the HTTP server's thread, so a tick costs nothing more with metrics
on. prometheus_client is imported inside `collect`: the console must not import it
(tests/test_boundaries.py), and prometheus_client needs no Collector subclass, only
`collect()`.
"""

from __future__ import annotations

import time
from typing import Iterator

from console.bridges.prometheus.names import METRICS
from console.protocol.model import ACTIVE_STATES, RUN_STATES, RunView, Snapshot
from console.protocol.presence import STALE_S
from console.protocol.vocabulary import STAGE_NAMES

MIB = 2 ** 20           # NVML's figures in the snapshot are MiB


class SnapshotCollector:
    def __init__(self, experiment: str, *, local_host: str | None) -> None:
        """`local_host`: where every run runs (backend: local); None when runs go to other
        machines (Slurm, a team split), whose host is then the one each run was last seen
        on."""
        self.experiment = experiment
        self.local_host = local_host
        self._latest: tuple[Snapshot, float] | None = None
        self._hosts: dict[str, str] = {}

    def update(self, snap: Snapshot, t: float) -> None:
        """The supervisor's newest snapshot and the wall time of its tick."""
        if self.local_host is None:
            # a run's host is known only while it has a process: remembered, so that its
            # series keep one label set through backoff and completion
            self._hosts.update((r.key, r.host) for r in snap.runs if r.host)
        self._latest = (snap, t)          # one reference: a scrape reads a whole snapshot

    def collect(self) -> Iterator:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        fams = {m.name: (CounterMetricFamily if m.type == "counter" else GaugeMetricFamily)(
                    m.name, m.help, labels=m.labels) for m in METRICS}
        latest = self._latest
        if latest is None:                # before the first tick
            fams["foldwatch_supervisor_up"].add_metric((self.experiment,), 0)
        else:
            snap, t = latest
            add = _Adder(fams)
            for r in snap.runs:
                self._run(add, r)
            for g in snap.gpus:
                self._gpu(add, g)
            self._experiment(add, snap, max(0.0, time.time() - t))
        yield from fams.values()

    def run_labels(self, r: RunView) -> tuple[str, ...]:
        stage = "" if r.kind == "fold" else next(
            (s for s in STAGE_NAMES if r.key.startswith(s)), r.label)
        host = self.local_host or self._hosts.get(r.key, "")
        return (self.experiment, r.key, r.configuration or "",
                "" if r.fold is None else str(r.fold), stage, host)

    def _run(self, add: "_Adder", r: RunView) -> None:
        lab = self.run_labels(r)
        for state in RUN_STATES:
            add("run_state", lab + (state,), 1 if r.state == state else 0)
        # the Epoch column: epochs done / epochs, or a stage's items done / items
        if r.epochs:
            done, total = r.epoch or 0, r.epochs
        elif r.progress:
            done, total = r.progress
        else:
            done = total = None
        add("run_epoch", lab, done)
        add("run_epochs", lab, total)
        add("run_val_dice", lab, r.val_dice)
        add("run_ema_dice", lab, r.ema_dice)
        add("run_best_ema_dice", lab, r.best_dice)
        add("run_train_loss", lab, r.train_loss)
        add("run_samples_per_second", lab, r.samples_per_s)
        add("run_epoch_seconds", lab, r.epoch_s)
        active = r.state in ACTIVE_STATES
        add("run_eta_seconds", lab, r.eta_s if active else None)
        add("run_last_event_age_seconds", lab, r.last_event_age_s if active else None)
        add("run_restarts_total", lab, r.restarts)

    def _gpu(self, add: "_Adder", g) -> None:
        lab = (str(g.index), g.uuid or "", g.name or "")
        add("gpu_lost", lab, 1 if g.lost else 0)
        add("gpu_utilization_ratio", lab, None if g.util_pct is None else g.util_pct / 100)
        add("gpu_memory_used_bytes", lab, _bytes(g.mem_used_mb))
        add("gpu_memory_total_bytes", lab, _bytes(g.mem_total_mb))
        add("gpu_temperature_celsius", lab, g.temp_c)
        add("gpu_power_watts", lab, g.power_w)
        add("gpu_power_limit_watts", lab, g.power_limit_w)
        ours: dict[str, float | None] = {}
        foreign = 0.0
        for p in g.processes:
            if p.run_key is None:
                foreign += p.used_mb or 0.0
            elif p.used_mb is None:        # NVML could not tell: the run still uses the GPU
                ours.setdefault(p.run_key, None)
            else:
                ours[p.run_key] = (ours.get(p.run_key) or 0.0) + p.used_mb
        where = (str(g.index), g.uuid or "", self.experiment)
        for key, mb in ours.items():
            add("gpu_run_info", where + (key,), 1)
            add("gpu_run_memory_bytes", where + (key,), _bytes(mb))
        if not g.lost:
            add("gpu_foreign_memory_bytes", lab, foreign * MIB)

    def _experiment(self, add: "_Adder", snap: Snapshot, age: float) -> None:
        exp = (self.experiment,)
        add("cpu_mode", exp, 1 if snap.cpu_mode else 0)
        if snap.cpu_mode:
            add("cpu_slots", exp, snap.cpu_slots)
        for state in RUN_STATES:
            add("runs", exp + (state,), sum(r.state == state for r in snap.runs))
        add("experiment_finished", exp, 1 if snap.finished else 0)
        add("experiment_succeeded", exp, 1 if snap.succeeded else 0)
        add("watchdog_enabled", exp, 1 if snap.watchdog_enabled else 0)
        add("notices", exp, len(snap.notices))
        add("supervisor_up", exp, 1 if age <= STALE_S else 0)
        add("supervisor_last_tick_age_seconds", exp, age)


class _Adder:
    """add(short name, labels, value): one sample; None (not known yet) adds none."""

    def __init__(self, fams: dict) -> None:
        self.fams = fams

    def __call__(self, short: str, labels: tuple[str, ...], value) -> None:
        if value is not None:
            self.fams[f"foldwatch_{short}"].add_metric(labels, float(value))


def _bytes(mb: float | None) -> float | None:
    return None if mb is None else mb * MIB
