"""Starting one run: the trainer command line, its environment, the backend call, each step
persisted so that a supervisor killed at any instruction never starts a second copy."""

from __future__ import annotations

import uuid
from typing import Callable

from console.backends.base import (LAUNCH_TOKEN_ENV, RUN_DIR_ENV, Backend, BackendError,
                                   LaunchSpec)
from console.engine.exits import Adopter
from console.engine.runstate import RunState as S
from console.engine.runstate import Run
from console.gpu.allocation import cpu_threads
from console.kinds import Kind
from console.store import faults
from contracts.experiment import Experiment
from contracts.layout import run_files


class Launcher:
    def __init__(self, backend: Backend, kind: Kind, decide: Callable, exp: Experiment,
                 adopter: Adopter, persist: Callable[[], bool]) -> None:
        self.backend, self.kind, self.decide, self.exp = backend, kind, decide, exp
        self.adopter, self.persist = adopter, persist

    def command(self, run: Run, device: str, parallel: int, token: str) -> LaunchSpec:
        """What to start for `run` on `device` (ARCHITECTURE.md section 5)."""
        job = run.job
        # the trainer kind (console/kinds/) says what to run and whether it resumes
        argv, kind_env, resume = self.kind.launch(job, device, run.overrides or None)
        run.resuming = resume
        env = {**kind_env, "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
               "CUDA_VISIBLE_DEVICES": device[3:] if device.startswith("gpu") else "",
               "FOLDWATCH_CPU_THREADS": str(cpu_threads(self.exp.devices, parallel)),
               # console.runner's heartbeats while a program prints but logs nothing: often
               # enough that the stall timer never fires on a program that is alive
               "FOLDWATCH_HEARTBEAT_S": f"{min(60.0, self.exp.watchdog.stall_timeout_s / 3):g}",
               # found by this token if the supervisor dies before saving its pid; locks its
               # run folder before its heavy imports (contracts.runlock.lock_early)
               LAUNCH_TOKEN_ENV: token, RUN_DIR_ENV: str(job.run_dir)}
        return LaunchSpec(job.key, argv, job.run_dir, env, needs_gpu=job.needs_gpu,
                          fold=job.kind == "fold", token=token)

    def launch(self, run: Run, device: str, now: float, parallel: int) -> None:
        """Start `run`: a live holder of the run folder is adopted instead; the intent
        ("launching attempt N", with its token) is saved (fsync'd) before the process
        starts, its pid and start time right after."""
        if self.adopter.holder(run, now) is not False:
            return                         # adopted, or held by a process we cannot watch
        token = uuid.uuid4().hex
        spec = self.command(run, device, parallel, token)
        run.attempts += 1
        run.launch = {"attempt": run.attempts, "starts": run.metrics.starts, "t": now,
                      "device": device, "token": token}
        run.handle, run.device, run.state = None, device, S.STARTING
        run.starts_at_launch = run.metrics.starts
        try:
            run.stderr_at_launch = run_files(run.job.run_dir)["stderr"].stat().st_size
        except OSError:
            run.stderr_at_launch = 0
        faults.point("launch:intent")
        if not self.persist():
            run.state, run.launch, run.device = S.QUEUED, None, None
            run.attempts -= 1
            run.message = "not launched: the launch could not be recorded in state.json " \
                          "(see the header); retried every tick"
            return
        faults.point("launch:intent-saved")
        try:
            handle = self.backend.submit(spec)
        except BackendError as e:
            self._refused(run, e, now)
            return
        except OSError as e:
            run.state, run.launch = S.FAILED, None
            run.message = f"could not start {spec.argv[0]}: {e.strerror or e}"
            self.decide(run, "fail", run.message)
            return
        faults.point("launch:submitted")
        run.handle, run.launch = handle, None
        run.run_now = False                # the wish is granted
        run.last_activity = now
        run.message = None
        run.mark_checkpoint()
        self.persist()                     # pid + create_time; a failure is retried next tick
        faults.point("launch:recorded")
        self._say(run, spec, handle, device)

    def _refused(self, run: Run, e: BackendError, now: float) -> None:
        if e.permanent:                # the slurm: section asks for what the cluster refuses
            run.state, run.launch = S.FAILED, None
            run.message = (f"the cluster refused the job: {e}. Fix the slurm: section of "
                           f"{self.exp.source} (partition, account, qos, gpus_per_run, "
                           "mem_per_run, extra_sbatch) and resume")
            self.decide(run, "fail", run.message)
            return
        # Controller busy or down, or the submission could not be checked: later, not failed.
        run.state, run.launch = S.BACKOFF, None
        run.backoff_until = now + max(5.0, self.exp.slurm.poll_interval_s)
        run.message = f"sbatch failed, retrying: {e}"
        self.decide(run, "submit_failed", run.message)

    def _say(self, run: Run, spec: LaunchSpec, handle, device: str) -> None:
        flags = ""
        if run.resuming:           # foldwatch's flag by name; other kinds resume their own way
            flags = " --resume" if self.exp.trainer == "foldwatch" else " (resuming)"
        if run.overrides and run.job.kind == "fold":
            flags += (f" (batch size {run.overrides.get('batch_size')}, grad accumulation "
                      f"{run.overrides.get('grad_accumulation')})")
        if handle.job_id:              # a batch job; found by its name when already submitted
            what = (f"re-adopted job {handle.job_id} (submitted before the supervisor died)"
                    if handle.adopted else f"job {handle.job_id}")
            self.decide(run, "adopt" if handle.adopted else "launch",
                        f"{what}{flags} (attempt {run.attempts})", argv=spec.argv,
                        job_id=handle.job_id, attempt=run.attempts)
            return
        self.decide(run, "launch", f"pid {handle.pid} on {device}{flags} (attempt "
                    f"{run.attempts})", argv=spec.argv, pid=handle.pid, attempt=run.attempts)
