"""Supervision, the first phases of a tick: read what runs logged, reap exited processes,
judge exits by the watchdog rules, escalate SIGTERM to SIGKILL, act on stalls, lost GPUs
and chaos mode. Functions of the engine's runs; the Engine calls them in order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from console.engine import views
from console.store import disk
from console.kinds.jobs import configured_batch
from contracts.layout import run_files
from console.engine import rules as wd
from console.gpu.nvml import NvmlReading
from console.engine.runstate import RunState as S
from console.engine.runstate import Run

if TYPE_CHECKING:
    from console.engine.core import Engine


def tail(eng: "Engine", run: Run, now: float) -> None:
    """Feed the run's new log lines to its metrics; notice activity and first `start`."""
    before = run.tailer.offset, run.tailer.resets

    def feed(ev: dict) -> None:
        run.metrics.feed(ev)
        # A new resumable checkpoint (checkpoint-then-announce) proves progress: the restart
        # counter starts again, so only a crash loop is given up on. An `epoch` line does not
        # count: it may precede a checkpoint save that fails.
        epoch = ev.get("epoch")
        if (ev.get("event") == "checkpoint" and ev.get("kind") == "latest"
                and isinstance(epoch, int) and run.handle is not None and not eng.read_only
                and run.metrics.starts > run.starts_at_launch
                and (run.ckpt_mark is None or epoch > run.ckpt_mark)):
            run.ckpt_mark = epoch
            if run.restarts:
                eng.decide(run, "reset", f"saved a new checkpoint (epoch {epoch}) after a "
                           f"restart; restart counter {run.restarts} -> 0")
                run.restarts = 0

    run.tailer.read_each(feed)
    if (run.tailer.offset, run.tailer.resets) != before:
        run.last_activity = now
        if run.state == S.STARTING and run.metrics.starts > run.starts_at_launch:
            run.state = S.RUNNING
        elif run.state == S.STALLED and not run.stalled:
            run.state = S.RUNNING


def reap(eng: "Engine", now: float) -> None:
    for run in eng.runs.values():
        if run.handle is None:
            continue
        done, code = eng.backend.poll(run.handle)
        if done:
            tail(eng, run, now)          # the `end` event may have just landed
            on_exit(eng, run, code, now)


def on_exit(eng: "Engine", run: Run, code: int | None, now: float,
            unattended: bool = False) -> None:
    """The run's process is gone: decide what comes next (watchdog rules)."""
    end = run.metrics.end if run.metrics.starts > run.starts_at_launch else None
    was, handle = run.device, run.handle
    run.handle, run.device, run.term_deadline = None, None, None
    if run.gpu_lost:
        run.gpu_lost = run.stalled = run.stop_requested = False
        run.state = S.QUEUED
        eng.decide(run, "reschedule", f"{was} was lost; rescheduled on another device")
        return
    cause = wd.cluster_stop(end, eng.backend.ended_by_cluster(handle) if handle else None,
                            stop_requested=run.stop_requested or run.stalled,
                            queued_backend=eng.backend.queues_runs)
    if cause is not None and not run.scratch_pending and _no_progress(run, cause, eng):
        return
    if cause is not None and not run.scratch_pending:
        # The walltime, preemption, a lost node or someone else's scancel: not a crash.
        run.state, run.stop_requested = S.QUEUED, False
        run.message = f"ended by the cluster ({cause}); resubmitted with --resume"
        job = f", job {handle.job_id}" if handle is not None and handle.job_id else ""
        eng.decide(run, "requeue", f"ended by the cluster ({cause}{job}); resubmitting with "
                   "--resume, no restart counted")
        return
    cfg = eng.exp.watchdog
    # what this attempt wrote to stderr (the file keeps every attempt's)
    stderr = views.stderr_tail(run, 40, since=run.stderr_at_launch) if end is None else None
    v = wd.judge_exit(code, end, stop_requested=run.stop_requested, stalled=run.stalled,
                      restarts=run.restarts, cfg=cfg, enabled=eng.watchdog_enabled,
                      stderr_lines=stderr)
    run.stalled = run.stop_requested = False
    if unattended:
        v.reason += " (while no supervisor was watching)"
    if run.scratch_pending:
        run.scratch_pending = False
        eng.move_aside(run)
        return
    if v.outcome == "busy":
        _busy(eng, run, now)
        return
    if v.outcome == "waiting":
        wait_for_space(eng, run, v.reason)
        return
    if v.outcome != "restart":
        run.state = v.outcome
        run.message = None if v.outcome == "completed" else v.reason
        eng.decide(run, v.action, v.reason)
        return
    run.restarts += 1
    run.total_restarts += 1
    extra = _refit(eng, run) if v.oom else ""
    delay = wd.backoff_delay(run.restarts, cfg, eng.rng)
    run.state, run.backoff_until = S.BACKOFF, now + delay
    run.message = f"{v.reason}{extra}"
    eng.decide(run, "restart", f"{v.reason}; restart {run.restarts}/{cfg.max_restarts} "
               f"with --resume in {delay:.1f}s{extra}")


# Cluster stops in a row that saved no new checkpoint before a run is given up on: a time
# limit or signal lead too short to ever checkpoint must not resubmit forever.
MAX_FRUITLESS_CLUSTER_STOPS = 5


def _no_progress(run: Run, cause: str, eng: "Engine") -> bool:
    """Count a cluster stop; True (run failed, said why) after too many without progress."""
    try:
        mark = run_files(run.job.run_dir)["latest"].stat().st_mtime
    except OSError:
        mark = None
    if mark is not None and mark != run.cluster_ckpt:
        run.cluster_stops, run.cluster_ckpt = 0, mark
    run.cluster_stops += 1
    if run.cluster_stops <= MAX_FRUITLESS_CLUSTER_STOPS:
        return False
    run.state, run.stop_requested = S.FAILED, False
    run.message = (f"ended by the cluster ({cause}) {run.cluster_stops - 1} times in a row "
                   "without saving a new checkpoint; not resubmitted. A longer "
                   "slurm.time_limit or checkpoint_before_s (or a healthier partition) is "
                   "needed; resume it with 'r'")
    eng.decide(run, "give_up", run.message)
    return True


def _busy(eng: "Engine", run: Run, now: float) -> None:
    """Exit 73: another process holds the run folder. Adopt it; no restart counted."""
    from console.engine.adoption import adopt_holder
    run.state = S.QUEUED
    got = adopt_holder(eng, run, now)
    if got is False:
        eng.decide(run, "requeue", "the trainer found its run folder busy (exit 73), but the "
                   "holder is gone now; queued again, no restart counted")
    elif got is None:
        eng.decide(run, "busy", run.message or "run folder busy")


def wait_for_space(eng: "Engine", run: Run, why: str) -> None:
    """Exit 74: wait until the results disk has room again; no restart counted."""
    root = eng.layout.root
    run.state = S.WAITING
    run.wait_for_free, run.wait_reason = disk.retry_threshold(root), why
    run.message = f"waiting for disk space: {disk.free_text(root)} ({why})"
    eng.decide(run, "wait", f"{why}; retried when {disk.mb(run.wait_for_free)} are free on "
               f"{root}, no restart counted")


def space_back(eng: "Engine") -> None:
    """Runs waiting for disk space go back to the queue once there is room."""
    for run in eng.runs.values():
        if run.state != S.WAITING:
            continue
        u = disk.usage(eng.layout.root)
        if u is not None and u[0] >= (run.wait_for_free or 0):
            run.state, run.wait_for_free, run.wait_reason = S.QUEUED, None, None
            run.message = None
            eng.decide(run, "retry", f"{disk.mb(u[0])} free on {eng.layout.root} now: "
                       "trying again")
        else:
            why = f" ({run.wait_reason})" if run.wait_reason else ""
            run.message = f"waiting for disk space: {disk.free_text(eng.layout.root)}{why}"


def _refit(eng: "Engine", run: Run) -> str:
    """Out of memory: halve the batch, double accumulation (auto_fit_on_oom); the note."""
    if not (eng.exp.watchdog.auto_fit_on_oom and run.job.kind == "fold"
            and eng.exp.trainer == "foldwatch"):       # other kinds own their batch size
        return ""
    cfg = eng.exp.configurations[run.job.configuration]
    bs = run.overrides.get("batch_size") or configured_batch(eng.exp, cfg, run.job.configuration)
    ga = run.overrides.get("grad_accumulation", cfg.grad_accumulation)
    refit = wd.refit_after_oom(bs, ga)
    if not refit:
        return ""
    run.overrides = refit
    eng.decide(run, "refit", f"out of memory: batch size {bs} -> {refit['batch_size']}, "
               f"grad accumulation {ga} -> {refit['grad_accumulation']}", **refit)
    return (f"; refit batch size {bs} -> {refit['batch_size']}, "
            f"grad accumulation {ga} -> {refit['grad_accumulation']}")


def escalate(eng: "Engine", now: float) -> None:
    """SIGKILL the groups still alive after their grace period."""
    for run in eng.runs.values():
        if run.handle is not None and run.term_deadline is not None and now >= run.term_deadline:
            eng.backend.cancel(run.handle, force=True)
            run.term_deadline = None
            eng.decide(run, "kill", "still alive after the grace period: " + (
                f"scancel job {run.handle.job_id}" if run.handle.job_id
                else "SIGKILL to its group"))


def stalls(eng: "Engine", now: float) -> None:
    cfg = eng.exp.watchdog
    limit = cfg.stall_timeout_s
    for run in eng.runs.values():
        if (run.handle is None or run.stalled or run.stop_requested
                or run.last_activity is None or now - run.last_activity <= limit):
            continue
        if eng.backend.is_pending(run.handle):
            run.last_activity = now           # waiting in the cluster's queue is not a stall
            continue
        run.stalled, run.state = True, S.STALLED
        run.term_deadline = now + cfg.grace_period_s
        eng.backend.cancel(run.handle)
        eng.decide(run, "stall", f"no new event for {now - run.last_activity:.0f}s "
                   f"(stall_timeout_s={limit:g}): SIGTERM, SIGKILL after "
                   f"{cfg.grace_period_s:g}s, then restart")


def lost_gpus(eng: "Engine", reading: NvmlReading) -> None:
    lost = {f"gpu{g.index}" for g in reading.gpus if g.lost}
    for run in eng.runs.values():
        if run.handle is not None and run.device in lost and not run.gpu_lost:
            run.gpu_lost = True
            eng.backend.cancel(run.handle, force=True)
            eng.decide(run, "gpu_lost", f"{run.device} is lost: killing the run to "
                       "reschedule it on another device")


def nvml_problems(eng: "Engine", reading: NvmlReading) -> None:
    """Each failing NVML call once in console/events.jsonl, with its cause (the GPU screen
    lists them too), instead of a silent n/a."""
    said = eng.__dict__.setdefault("_nvml_said", set())
    for problem in reading.problems:
        if problem not in said:
            said.add(problem)
            eng.decide(None, "nvml", f"{problem}; shown as n/a")


class Chaos:
    """`--chaos SECONDS`: SIGKILL a random running fold now and then, to show the watchdog."""

    def __init__(self, every_s: float | None, now: float) -> None:
        self.every_s = every_s
        self.next = now + every_s if every_s else None

    def tick(self, eng: "Engine", now: float) -> None:
        if self.next is None or now < self.next:
            return
        self.next = now + self.every_s * eng.rng.uniform(0.5, 1.5)
        victims = [r for r in eng.runs.values()
                   if r.job.kind == "fold" and r.state == S.RUNNING and r.handle is not None]
        if victims:
            run = eng.rng.choice(victims)
            eng.decide(run, "chaos", "chaos mode: SIGKILL to show the watchdog")
            eng.backend.cancel(run.handle, force=True)
