"""A run's process is gone: reap it and decide what comes next (the watchdog's rules,
console.engine.rules, applied), and a live process found holding a run's folder: adopt it."""

from __future__ import annotations

import random
from typing import Callable

from console.backends.base import Backend
from console.engine import rules as wd
from console.engine.logs import LogReader
from console.engine.runstate import RunState as S
from console.engine.runstate import Run
from console.engine.table import RunTable, Settings
from console.engine.details import stderr_tail
from console.kinds.jobs import configured_batch
from console.store import disk
from contracts import runlock
from contracts.experiment import Experiment
from contracts.layout import run_files

# Cluster stops in a row that saved no new checkpoint before a run is given up on: a time
# limit or signal lead too short to ever checkpoint must not resubmit forever.
MAX_FRUITLESS_CLUSTER_STOPS = 5


class Adopter:
    """Takes over a live process as a run's own (after a supervisor restart, exit 73)."""

    def __init__(self, backend: Backend, decide: Callable) -> None:
        self.backend, self.decide = backend, decide

    def adopt(self, run: Run, handle, now: float, how: str,
              starts_before: int | None = None) -> None:
        """`starts_before`: the `start` events before this process's (a process still
        starting has written none yet); by default its own is the last one."""
        run.handle, run.launch = handle, None
        run.starts_at_launch = (max(0, run.metrics.starts - 1) if starts_before is None
                                else starts_before)
        run.restore(S.RUNNING if run.metrics.starts > run.starts_at_launch else S.STARTING)
        run.wanted, run.user_stopped = True, False
        run.last_activity = now
        run.mark_checkpoint()
        where = f" on {run.device}" if run.device else ""
        self.decide(run, "adopt", f"{how} {handle.pid or handle.job_id}{where}")

    def holder(self, run: Run, now: float) -> bool | None:
        """A live process holding the run folder's lock: adopted (True); held but not
        adoptable, e.g. another host or an unreadable record (None); not held (False)."""
        held = runlock.holder(run.job.run_dir)
        if held is None:
            return False
        handle = self.backend.adopt(run.key, held, run.job.run_dir) if held else None
        if handle is None:
            who = f"pid {held.get('pid', '?')} on {held.get('host', '?')}" if held else "a process"
            run.message = (f"{run.job.run_dir} is held by {who} (run lock); not starting a "
                           "second process")
            return None
        device = held.get("device")
        run.device = run.device or (device if isinstance(device, str) else None)
        self.adopt(run, handle, now, "adopted the process holding the run folder: pid")
        return True


class ExitJudge:
    """Reaps finished processes and applies the watchdog's rules to each exit."""

    def __init__(self, runs: RunTable, backend: Backend, decide: Callable, exp: Experiment,
                 settings: Settings, logs: LogReader, adopter: Adopter,
                 move_aside: Callable[[Run], str], rng: random.Random) -> None:
        self.runs, self.backend, self.decide = runs, backend, decide
        self.exp, self.cfg, self.settings = exp, exp.watchdog, settings
        self.logs, self.adopter, self.move_aside, self.rng = logs, adopter, move_aside, rng

    def reap(self, now: float) -> None:
        for run in self.runs.alive():
            done, code = self.backend.poll(run.handle)
            if done:
                self.logs.read(run, now)         # the `end` event may have just landed
                self.on_exit(run, code, now)

    def on_exit(self, run: Run, code: int | None, now: float, unattended: bool = False) -> None:
        """The run's process is gone: decide what comes next."""
        end = run.metrics.end if run.metrics.starts > run.starts_at_launch else None
        was, handle = run.device, run.handle
        run.handle, run.device, run.term_deadline = None, None, None
        if run.gpu_lost:
            run.gpu_lost = run.stalled = run.stop_requested = False
            run.state = S.QUEUED
            self.decide(run, "reschedule", f"{was} was lost; rescheduled on another device")
            return
        cause = wd.cluster_stop(end, self.backend.ended_by_cluster(handle) if handle else None,
                                stop_requested=run.stop_requested or run.stalled,
                                queued_backend=self.backend.queues_runs)
        if cause is not None and not run.scratch_pending:
            if not self._no_progress(run, cause):
                self._requeue_after_cluster_stop(run, cause, handle)
            return
        # what this attempt wrote to stderr (the file keeps every attempt's)
        stderr = stderr_tail(run, 40, since=run.stderr_at_launch) if end is None else None
        v = wd.judge_exit(code, end, stop_requested=run.stop_requested, stalled=run.stalled,
                          restarts=run.restarts, cfg=self.cfg,
                          enabled=self.settings.watchdog_enabled, stderr_lines=stderr)
        run.stalled = run.stop_requested = False
        if unattended:
            v.reason += " (while no supervisor was watching)"
        if run.scratch_pending:
            run.scratch_pending = False
            self.move_aside(run)
        elif v.outcome == "busy":
            self._busy(run, now)
        elif v.outcome == "waiting":
            self.wait_for_space(run, v.reason)
        elif v.outcome != "restart":
            run.state = v.outcome
            run.message = None if v.outcome == "completed" else v.reason
            self.decide(run, v.action, v.reason)
        else:
            self._restart(run, v, now)

    def _restart(self, run: Run, v, now: float) -> None:
        run.restarts += 1
        run.total_restarts += 1
        extra = self._refit(run) if v.oom else ""
        delay = wd.backoff_delay(run.restarts, self.cfg, self.rng)
        run.state, run.backoff_until = S.BACKOFF, now + delay
        run.message = f"{v.reason}{extra}"
        self.decide(run, "restart", f"{v.reason}; restart {run.restarts}/{self.cfg.max_restarts} "
                    f"with --resume in {delay:.1f}s{extra}")

    def _requeue_after_cluster_stop(self, run: Run, cause: str, handle) -> None:
        """The walltime, preemption, a lost node or someone else's scancel: not a crash."""
        run.state, run.stop_requested = S.QUEUED, False
        run.message = f"ended by the cluster ({cause}); resubmitted with --resume"
        job = f", job {handle.job_id}" if handle is not None and handle.job_id else ""
        self.decide(run, "requeue", f"ended by the cluster ({cause}{job}); resubmitting with "
                    "--resume, no restart counted")

    def _no_progress(self, run: Run, cause: str) -> bool:
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
        self.decide(run, "give_up", run.message)
        return True

    def _busy(self, run: Run, now: float) -> None:
        """Exit 73: another process holds the run folder. Adopt it; no restart counted."""
        run.state = S.QUEUED
        got = self.adopter.holder(run, now)
        if got is False:
            self.decide(run, "requeue", "the trainer found its run folder busy (exit 73), but "
                        "the holder is gone now; queued again, no restart counted")
        elif got is None:
            self.decide(run, "busy", run.message or "run folder busy")

    def wait_for_space(self, run: Run, why: str) -> None:
        """Exit 74: wait until the results disk has room again; no restart counted."""
        root = self.exp.layout.root
        run.state = S.WAITING
        run.wait_for_free, run.wait_reason = disk.retry_threshold(root), why
        run.message = f"waiting for disk space: {disk.free_text(root)} ({why})"
        self.decide(run, "wait", f"{why}; retried when {disk.mb(run.wait_for_free)} are free "
                    f"on {root}, no restart counted")

    def _refit(self, run: Run) -> str:
        """Out of memory: halve the batch, double accumulation (auto_fit_on_oom); the note."""
        if not (self.cfg.auto_fit_on_oom and run.job.kind == "fold"
                and self.exp.trainer == "foldwatch"):       # other kinds own their batch size
            return ""
        cfg = self.exp.configurations[run.job.configuration]
        bs = run.overrides.get("batch_size") or configured_batch(self.exp, cfg,
                                                                 run.job.configuration)
        ga = run.overrides.get("grad_accumulation", cfg.grad_accumulation)
        refit = wd.refit_after_oom(bs, ga)
        if not refit:
            return ""
        run.overrides = refit
        self.decide(run, "refit", f"out of memory: batch size {bs} -> {refit['batch_size']}, "
                    f"grad accumulation {ga} -> {refit['grad_accumulation']}", **refit)
        return (f"; refit batch size {bs} -> {refit['batch_size']}, "
                f"grad accumulation {ga} -> {refit['grad_accumulation']}")
