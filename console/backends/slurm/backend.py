"""Runs every fold and stage as an sbatch job (docs/slurm.md).

Crash-safe submission: the run folder's slurm-job.json records the intent (a job name unique
to this submission) before `sbatch`, and the job id right after; a console killed between
the two finds the job again by name, so a run is never submitted twice. State comes from one
`squeue` per poll interval for all runs; the exit code of an ended job from `scontrol` while
the controller still holds it, else `sacct` when accounting exists, else the run's `end` event.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Callable

from console.backends.base import Backend, Handle, LaunchSpec
from console.backends.slurm import queries as q
from console.backends.slurm.sbatch import batch_script, job_name, sbatch_options
from contracts.experiment import Experiment
from contracts.jsonio import atomic_write_bytes, atomic_write_json
from contracts.layout import run_files


def read_record(run_dir: Path) -> dict:
    """The run's slurm-job.json, {} when absent or unreadable."""
    import json
    try:
        data = json.loads(run_files(run_dir)["slurm_job"].read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class SlurmBackend:
    """Implements console.backends.base.Backend with sbatch/squeue/scontrol/scancel."""

    queues_runs = True            # the cluster queues: the engine submits every ready run

    def __init__(self, exp: Experiment, *, clock: Callable[[], float] = time.monotonic,
                 workdir: Path | None = None) -> None:
        self.exp = exp
        self.cfg = exp.slurm
        self.clock = clock
        # The experiment's folder: on the shared filesystem (its relative paths start there),
        # where the login node's current directory may not be.
        self.workdir = Path(workdir or exp.base_dir)
        self._table: dict[str, q.JobInfo] = {}
        self._table_at: float | None = None
        self._ended: dict[str, q.JobInfo] = {}     # final records, fetched once per job
        self._gone: set[str] = set()               # known to neither scontrol nor sacct
        self.error: str | None = None              # the last failed Slurm query, for the UI
        self._partition: q.PartitionInfo | None = None
        self._partition_at: float | None = None

    # -- queries ------------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """One squeue for all our jobs, at most once per poll_interval_s."""
        now = self.clock()
        if not force and self._table_at is not None and now - self._table_at < self.cfg.poll_interval_s:
            return
        try:
            self._table = q.squeue()
            self.error = None
        except q.SlurmError as e:
            self.error = str(e)          # keep the last known table; runs stay as they were
        self._table_at = now

    def job(self, job_id: str) -> q.JobInfo | None:
        """The latest known record of a job (squeue, then scontrol/sacct once it ended)."""
        if job_id in self._ended:
            return self._ended[job_id]
        if job_id in self._gone:
            return None
        self.refresh()
        info = self._table.get(job_id)
        if info is not None and info.active:
            return info
        if self.error is not None:
            return info
        final = self._final(job_id)
        if final is None and info is not None:
            final = info
        if final is not None and not final.active:
            self._ended[job_id] = final
        elif final is None and self.error is None:
            self._gone.add(job_id)                 # purged, no accounting: ask no more
        return final

    def _final(self, job_id: str) -> q.JobInfo | None:
        try:
            info = q.scontrol_job(job_id)
        except q.SlurmError as e:
            self.error = str(e)
            return None
        if info is None:
            info = q.sacct_job(job_id)     # None without accounting: the end event decides
        return info

    def partition_view(self) -> dict:
        """{partition, cpus_idle, cpus_total, gpus_free, gpus_total, nodes_up, nodes, error}."""
        info = self.partition()
        view = {"partition": self.cfg.partition or "default", "cpus_idle": None,
                "cpus_total": None, "gpus_free": None, "gpus_total": None, "nodes_up": None,
                "nodes": None, "error": self.error}
        if info is not None:
            view.update(cpus_idle=info.cpus_idle, cpus_total=info.cpus_total,
                        gpus_free=info.gpus_free, gpus_total=info.gpus_total,
                        nodes_up=info.nodes_up, nodes=info.nodes)
        return view

    def is_pending(self, handle: Handle) -> bool:
        """Waiting in the cluster's queue: not started, so not stalled either."""
        return self.describe(handle).get("state") in (None, "PENDING", "CONFIGURING")

    def partition(self) -> q.PartitionInfo | None:
        """Free CPUs/GPUs of the partition (sinfo), refreshed every few poll intervals."""
        now = self.clock()
        if self._partition_at is None or now - self._partition_at >= 3 * self.cfg.poll_interval_s:
            self._partition_at = now
            try:
                self._partition = q.sinfo(self.cfg.partition)
            except q.SlurmError as e:
                self.error = str(e)
        return self._partition

    # -- the Backend interface ------------------------------------------------------------------
    def log_paths(self, run_dir: Path) -> dict[str, Path]:
        return run_files(Path(run_dir))

    def submit(self, spec: LaunchSpec) -> Handle:
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        live = self._recorded_job(spec.key, spec.run_dir)
        if live is not None:                  # submitted by a console that died: never twice
            return Handle(spec.key, 0, 0.0, adopted=True, job_id=live.job_id, host=live.nodes)
        name = job_name(self.cfg, self.exp.experiment, spec.key)
        files = run_files(spec.run_dir)
        # The trainer kind's job graph says which jobs use a GPU (nnU-Net's predictions too)
        opts = sbatch_options(self.cfg, name=name, run_dir=spec.run_dir, workdir=self.workdir,
                              needs_gpu=spec.needs_gpu)
        script = batch_script(spec.argv, opts, spec.env, fold=spec.fold, key=spec.key)
        atomic_write_bytes(files["slurm_script"], script.encode())
        record = {"key": spec.key, "job_name": name, "job_id": None, "argv": spec.argv,
                  "submit_host": socket.gethostname(), "submitted_at": time.time(),
                  "previous": self._previous_ids(spec.run_dir)}
        atomic_write_json(files["slurm_job"], record)           # the intent, before sbatch
        out = q.run(["sbatch", "--parsable", str(files["slurm_script"])], timeout=60)
        job_id = out.strip().split(";")[0]
        if not job_id.isdigit():
            raise q.SlurmError(f"sbatch answered {out.strip()!r}, not a job id")
        record["job_id"] = job_id
        atomic_write_json(files["slurm_job"], record)
        self._table[job_id] = q.JobInfo(job_id, "PENDING", name=name, submitted=time.time())
        return Handle(spec.key, 0, 0.0, job_id=job_id)

    def _previous_ids(self, run_dir: Path) -> list[str]:
        rec = read_record(run_dir)
        prev = [p for p in rec.get("previous") or [] if isinstance(p, str)]
        if rec.get("job_id"):
            prev.append(str(rec["job_id"]))
        return prev[-20:]

    def _recorded_job(self, key: str, run_dir: Path) -> q.JobInfo | None:
        """The live job slurm-job.json names (by id, or by its unique name when the console
        died before writing the id)."""
        rec = read_record(run_dir)
        if not rec:
            return None
        if rec.get("job_id"):
            info = self.job(str(rec["job_id"]))
            return info if info is not None and info.active else None
        name = rec.get("job_name")
        if not isinstance(name, str):
            return None
        try:
            found = q.squeue(name=name)
        except q.SlurmError as e:
            # Cannot tell whether the job exists: refuse rather than risk a second copy.
            raise q.SlurmError(f"cannot check whether {key} was already submitted "
                               f"(job name {name}): {e}") from None
        live = [j for j in found.values() if j.name == name and j.active]
        if not live:
            return None
        rec["job_id"] = live[0].job_id
        atomic_write_json(run_files(run_dir)["slurm_job"], rec)
        return live[0]

    def adopt(self, key: str, record: dict, run_dir: Path) -> Handle | None:
        """The live job that a state.json record or the run's slurm-job.json names."""
        job_id = record.get("job_id") if isinstance(record, dict) else None
        info = None
        try:
            if job_id:
                info = self.job(str(job_id))
            else:             # no id saved, or a run-lock holder: slurm-job.json says
                info = self._recorded_job(key, run_dir)
        except q.SlurmError as e:
            self.error = str(e)       # submit() checks again before it submits anything
            return None
        if info is None or not info.active:
            return None
        return Handle(key, 0, 0.0, adopted=True, job_id=info.job_id, host=info.nodes)

    def poll(self, handle: Handle) -> tuple[bool, int | None]:
        if not handle.job_id:
            return True, None
        info = self.job(handle.job_id)
        if info is None:
            # Unknown to squeue, scontrol and sacct: long gone; the end event decides.
            return (self.error is None), None
        if info.active:
            if info.nodes and info.state == "RUNNING":
                handle.host = info.nodes
            return False, None
        return True, info.exit_code

    def ended_by_cluster(self, handle: Handle) -> str | None:
        """timeout / preempted / node_fail / cancelled when Slurm ended the job, else None."""
        info = self._ended.get(handle.job_id or "")
        if info is None:
            return None
        if info.state in q.CLUSTER_ENDED:
            return q.CLUSTER_ENDED[info.state]
        if info.state == "CANCELLED":
            return "cancelled"
        return None

    def cancel(self, handle: Handle, force: bool = False) -> None:
        if not handle.job_id:
            return
        info = self.job(handle.job_id)
        if info is not None and not info.active:
            return
        if force or info is None or info.state != "RUNNING":
            argv = ["scancel", handle.job_id]          # Slurm: SIGTERM, KillWait, SIGKILL
        else:
            # Graceful: SIGTERM to the trainer (the batch shell) only; the job ends when it
            # has saved latest.pt and exited.
            argv = ["scancel", "--full", "--signal=TERM", handle.job_id]
        try:
            q.run(argv)
        except q.SlurmError as e:
            self.error = str(e)
        self._table_at = None                           # look again on the next poll

    def describe(self, handle: Handle) -> dict:
        """Job id, state, pending reason, node, queue time: the cluster view of one run."""
        info = self.job(handle.job_id) if handle.job_id else None
        if info is None:
            return {"job_id": handle.job_id}
        queued = None
        if info.submitted is not None:
            queued = (info.started or time.time()) - info.submitted
        return {"job_id": info.job_id, "state": info.state,
                "reason": info.reason if info.state == "PENDING" else None,
                "node": info.nodes if info.state != "PENDING" else None,
                "queue_s": max(0.0, queued) if queued is not None else None,
                "partition": info.partition}

