"""Asking Slurm about jobs and partitions: squeue, scontrol, sacct, sinfo, and their parsing.

Every call is one subprocess with a timeout; a slow or absent controller gives a
`SlurmError` the backend turns into "state unknown for now", never a crash of the console.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from console.backends.base import BackendError
from datetime import datetime

# Job states in which the job may still run (man squeue, JOB STATE CODES).
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
          "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
          "RESV_DEL_HOLD", "SPECIAL_EXIT"}
# Ended by the cluster, not by the program: resubmit with --resume, no restart counted.
CLUSTER_ENDED = {"TIMEOUT": "timeout", "PREEMPTED": "preempted", "NODE_FAIL": "node_fail",
                 "BOOT_FAIL": "node_fail", "DEADLINE": "timeout"}

SQUEUE_FORMAT = "%i|%j|%T|%r|%N|%V|%S|%P|%k"   # id, name, state, reason, nodes, submit, start
SQUEUE_FIELDS = ("job_id", "name", "state", "reason", "nodes", "submitted", "started",
                 "partition", "comment")


class SlurmError(BackendError):
    """A Slurm command failed or is missing: its command line and its message.
    `permanent`: the submission itself is wrong (partition, gres, memory, an option), so
    retrying cannot help."""


# sbatch's words for a job the cluster will never accept as written (checked lower-case).
_PERMANENT = ("invalid partition", "invalid account", "invalid qos", "invalid generic resource",
              "requested node configuration is not available", "unrecognized option",
              "invalid option", "memory specification can not be satisfied",
              "invalid time limit", "invalid --")


def run(argv: list[str], timeout: float = 20.0) -> str:
    """stdout of a Slurm command; SlurmError with its stderr when it fails."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} not found: is this a Slurm login node (PATH)?") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{' '.join(argv[:2])} did not answer in {timeout:.0f}s") from None
    if p.returncode != 0:
        lines = [ln.strip() for ln in (p.stderr or p.stdout).strip().splitlines() if ln.strip()]
        said = [ln for ln in lines if "error" in ln.lower() or "unrecognized" in ln] or lines[-1:]
        text = "; ".join(dict.fromkeys(said)) or "no message"
        raise SlurmError(f"{' '.join(argv[:2])} failed (exit {p.returncode}): {text}",
                         permanent=any(w in text.lower() for w in _PERMANENT))
    return p.stdout


def slurm_time(text: str | None) -> float | None:
    """Unix time of a Slurm timestamp (2026-11-22T17:27:13, local time); None for N/A."""
    if not text or text in ("N/A", "Unknown", "None", "(null)"):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


@dataclass
class JobInfo:
    """What the backend knows about one job from squeue/scontrol/sacct."""
    job_id: str
    state: str                       # RUNNING, PENDING, COMPLETED, TIMEOUT, ...
    name: str = ""
    reason: str | None = None        # why PENDING (Resources, Priority, ...)
    nodes: str | None = None
    submitted: float | None = None
    started: float | None = None
    partition: str | None = None
    exit_code: int | None = None     # negative: killed by that signal
    comment: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


def _none(v: str) -> str | None:
    v = v.strip()
    return None if v in ("", "(null)", "None", "n/a", "N/A") else v


def parse_squeue(text: str) -> dict[str, JobInfo]:
    """`squeue -h -o SQUEUE_FORMAT` output -> {job id: JobInfo}."""
    jobs = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) != len(SQUEUE_FIELDS):
            continue
        d = dict(zip(SQUEUE_FIELDS, parts))
        state = d["state"].strip().split()[0] if d["state"].strip() else "UNKNOWN"
        jobs[d["job_id"].strip()] = JobInfo(
            job_id=d["job_id"].strip(), state=state, name=d["name"].strip(),
            reason=_none(d["reason"]), nodes=_none(d["nodes"]),
            submitted=slurm_time(d["submitted"].strip()), started=slurm_time(d["started"].strip()),
            partition=_none(d["partition"]), comment=_none(d["comment"]))
    return jobs


def exit_code(text: str) -> int | None:
    """Slurm's `code:signal` -> the exit code, or -signal when a signal ended it."""
    m = re.fullmatch(r"\s*(\d+):(\d+)\s*", text or "")
    if not m:
        return None
    code, sig = int(m.group(1)), int(m.group(2))
    return -sig if sig else code


def parse_scontrol(text: str) -> dict[str, JobInfo]:
    """`scontrol -o show job` output (one job per line, Key=Value) -> {job id: JobInfo}."""
    jobs = {}
    for line in text.splitlines():
        # Values never contain ' Key=' except Command/WorkDir paths with spaces: split on
        # the keys themselves.
        fields = dict(re.findall(r"(?:^|\s)([A-Za-z:/]+)=(.*?)(?=\s+[A-Za-z:/]+=|\s*$)", line))
        jid = fields.get("JobId")
        if not jid:
            continue
        state = (fields.get("JobState") or "UNKNOWN").split()[0]
        jobs[jid] = JobInfo(
            job_id=jid, state=state, name=fields.get("JobName", ""),
            reason=_none(fields.get("Reason", "")), nodes=_none(fields.get("NodeList", "")),
            submitted=slurm_time(fields.get("SubmitTime")),
            started=slurm_time(fields.get("StartTime")) if state != "PENDING" else None,
            partition=_none(fields.get("Partition", "")),
            exit_code=exit_code(fields.get("ExitCode", "")),
            comment=_none(fields.get("Comment", "")))
    return jobs


def parse_sacct(text: str) -> dict[str, JobInfo]:
    """`sacct -n -P -X -o JobID,JobName,State,ExitCode,NodeList` -> {job id: JobInfo}."""
    jobs = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 5 or not parts[0].strip():
            continue
        jid, name, state, code, nodes = (p.strip() for p in parts[:5])
        jobs[jid] = JobInfo(job_id=jid, name=name, state=state.split()[0] if state else "UNKNOWN",
                            exit_code=exit_code(code), nodes=_none(nodes))
    return jobs


def squeue(user_jobs_only: bool = True, name: str | None = None) -> dict[str, JobInfo]:
    """Our jobs, including those that ended within MinJobAge (one call for every run)."""
    argv = ["squeue", "-h", "--states=all", "-o", SQUEUE_FORMAT]
    if user_jobs_only:                    # --user, not --me: Slurm before 20.11 lacks --me
        import getpass
        argv.append(f"--user={getpass.getuser()}")
    if name:
        argv.append(f"--name={name}")
    return parse_squeue(run(argv))


def scontrol_job(job_id: str) -> JobInfo | None:
    """The controller's record of one job (exit code included), None once it is purged."""
    try:
        return parse_scontrol(run(["scontrol", "-o", "show", "job", job_id])).get(job_id)
    except SlurmError as e:
        if "Invalid job id" in str(e):
            return None
        raise


def sacct_job(job_id: str) -> JobInfo | None:
    """The accounting record of a finished job; None when accounting is off or has none."""
    try:
        out = run(["sacct", "-n", "-P", "-X", "-j", job_id,
                   "-o", "JobID,JobName,State,ExitCode,NodeList"])
    except SlurmError:
        return None
    return parse_sacct(out).get(job_id)


@dataclass
class PartitionInfo:
    name: str | None
    cpus_idle: int = 0
    cpus_total: int = 0
    gpus_free: int = 0
    gpus_total: int = 0
    nodes: int = 0
    nodes_up: int = 0


def _gpu_count(gres: str) -> int:
    """GPUs in a gres string: 'gpu:a100:4(S:0-1),shard:8' -> 4."""
    total = 0
    for item in (gres or "").split(","):
        item = re.sub(r"\(.*?\)", "", item).strip()
        if item.startswith("gpu"):
            last = item.split(":")[-1]
            total += int(last) if last.isdigit() else 0
    return total


def parse_sinfo(text: str, partition: str | None) -> PartitionInfo:
    """`sinfo -h -N -O NodeHost,Gres,GresUsed,CPUsState,StateCompact` (| separated)."""
    info = PartitionInfo(partition)
    seen = set()
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 5 or parts[0] in seen:
            continue
        seen.add(parts[0])
        host, gres, used, cpus, state = parts[:5]
        info.nodes += 1
        usable = not any(s in state for s in ("down", "drain", "fail", "maint", "*"))
        try:
            alloc, idle, other, total = (int(x) for x in cpus.split("/"))
        except ValueError:
            alloc = idle = total = 0
        info.cpus_total += total
        gt, gu = _gpu_count(gres), _gpu_count(used)
        info.gpus_total += gt
        if usable:
            info.nodes_up += 1
            info.cpus_idle += idle
            info.gpus_free += max(0, gt - gu)
    return info


def sinfo(partition: str | None) -> PartitionInfo:
    argv = ["sinfo", "-h", "-N", "-O", "NodeHost:|,Gres:|,GresUsed:|,CPUsState:|,StateCompact:|"]
    if partition:
        argv.append(f"--partition={partition}")
    return parse_sinfo(run(argv), partition)
