"""Find the experiment's supervisor, or start one: `foldwatch up`, and any command that finds
it gone while supervision is wanted.

The supervisor is `python -m console.supervisor EXP` in a session of its own (a closed
terminal, SIGHUP or a lost SSH connection do not reach it), its output appended to
`supervisor.log`. `foldwatch up` saves its environment (nnUNet_raw, CUDA_*, PATH, a
virtualenv...) beside it, readable only by its owner, so that a supervisor restarted by
another command (`foldwatch status` from a bare shell) launches runs the same way.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from console.protocol import presence as pr
from contracts import exitcodes
from contracts.errors import UserError
from contracts.layout import SupervisorHome


class SupervisorFailed(UserError):
    """The supervisor could not start (its own words, from supervisor.log)."""


class SupervisedElsewhere(UserError):
    """The experiment's supervisor ran on another host of a shared results folder."""


def check_host(exp_path: Path, p: pr.Presence, *, here: bool) -> None:
    """Starting a supervisor here when the last one ran on another host: with the local
    backend its runs are that machine's processes, so a supervisor here would launch the
    queue on this machine (a laptop that mounts the cluster's results folder) and could not
    watch the runs still training there. Refused unless `here` (`foldwatch up --here`);
    a hung one elsewhere still holds the lock, and only its host can end it."""
    if p.here or p.state not in ("down", "not responding"):
        return
    name = shlex.quote(str(exp_path))     # the path here; on a shared mount often the same
    when = time.strftime("%H:%M", time.localtime(p.since)) if p.since else "?"
    if p.state == "not responding":
        raise SupervisedElsewhere(
            f"the supervisor of {name} runs on {p.host} (pid {p.pid}) and has not ticked "
            f"since {when}; only {p.host} can end it: `ssh {p.host} foldwatch down {name}`, "
            f"then `foldwatch up {name}` there")
    if here:
        return
    from contracts.experiment import load_experiment
    if load_experiment(exp_path).backend == "slurm":
        return                  # the runs are cluster jobs: any login node can supervise
    raise SupervisedElsewhere(
        f"{name} was supervised on {p.host} (pid {p.pid}, down since {when}) and its runs "
        f"train there (backend: local). Start its supervisor there: `ssh {p.host} "
        f"foldwatch up {name}`. Or `foldwatch up {name} --here` to supervise it from this "
        f"machine: queued runs then train here, and runs still training on {p.host} are "
        "left alone, not watched")


def supervisor_argv(exp_path: Path, *, runs: list[str] | None = None, hold: bool = False,
                    exit_when_idle: bool = False, chaos: float | None = None) -> list[str]:
    argv = [sys.executable, "-m", "console.supervisor", str(Path(exp_path).resolve())]
    if runs:
        argv += ["--runs", ",".join(runs)]
    if hold:
        argv.append("--hold")
    if exit_when_idle:
        argv.append("--exit-when-idle")
    if chaos:
        argv += ["--chaos", f"{chaos:g}"]
    return argv


def save_environment(home: SupervisorHome) -> None:
    """This shell's environment, for supervisors restarted from elsewhere (mode 0600)."""
    home.dir.mkdir(parents=True, exist_ok=True)
    tmp = home.environment.with_name(f".{home.environment.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(dict(os.environ), f)
    os.replace(tmp, home.environment)


def saved_environment(home: SupervisorHome) -> dict[str, str] | None:
    try:
        data = json.loads(home.environment.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    return {str(k): str(v) for k, v in data.items()}


def start(argv: list[str], home: SupervisorHome, env: dict[str, str] | None = None
          ) -> subprocess.Popen:
    """Start a detached supervisor (its own session); reaped in the background."""
    home.dir.mkdir(parents=True, exist_ok=True)
    with open(home.log, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env=env, start_new_session=True, close_fds=True)
    threading.Thread(target=proc.wait, name="foldwatch-reap-supervisor", daemon=True).start()
    return proc


def log_tail(home: SupervisorHome, since: int = 0, lines: int = 12) -> str:
    try:
        with open(home.log, "rb") as f:
            f.seek(since)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def wait_until_up(home: SupervisorHome, proc: subprocess.Popen, log_from: int,
                  timeout_s: float = 60.0) -> pr.Presence:
    """Wait for the first tick of `proc` (or of whichever supervisor won a start race)."""
    deadline = time.monotonic() + timeout_s
    while True:
        p = pr.presence(home)
        if p.state == "alive":
            return p
        code = proc.poll()
        # BUSY: another client started one first; it is waited for like ours
        if code not in (None, exitcodes.BUSY) and p.state not in ("alive", "starting"):
            raise SupervisorFailed(
                f"the supervisor exited with code {code} before its first tick:\n"
                f"{log_tail(home, log_from) or '(nothing in ' + str(home.log) + ')'}")
        if time.monotonic() > deadline:
            raise SupervisorFailed(f"the supervisor (pid {proc.pid}) did not tick within "
                                   f"{timeout_s:.0f}s; see {home.log}")
        time.sleep(0.05)


def _end_hung(p: pr.Presence, home: SupervisorHome) -> None:
    """A supervisor on this host that holds the lock but has stopped ticking: SIGKILL it
    (the pid checked against its start time) so a new one can take over."""
    from contracts.processes import same_process
    if p.pid is None or not p.here or not same_process(p.pid, p.create_time or 0.0):
        return
    os.kill(p.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pr.probe(home.lock) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def ensure(exp_path: Path, home: SupervisorHome, *, explicit: bool, by: str,
           runs: list[str] | None = None, hold: bool = False, exit_when_idle: bool = False,
           chaos: float | None = None, wait: bool = True, here: bool = False
           ) -> tuple[pr.Presence, bool]:
    """(the supervisor's presence, True when this call started it); `wait=False`: do not
    wait for its first tick (it is then "starting").

    `explicit` (`foldwatch up`, an action): start one unless one is alive, and want
    supervision from now on. Otherwise only restart one that is gone while wanted and last
    ran on this host (the runs of a local backend live here). A supervisor that last ran on
    another host is started here only as check_host allows (`here`: `up --here`); `hold`
    (a temporary one that never launches, for `foldwatch stop`) goes anywhere."""
    p = pr.presence(home)
    if p.alive:
        return p, False
    intent = pr.read_intent(home)
    if not explicit and not pr.restart_due(p, intent):
        return p, False
    if not hold:
        check_host(exp_path, p, here=here)
    if p.state == "not responding":
        _end_hung(p, home)
    if explicit:
        save_environment(home)
        env = None
        if not hold:
            pr.write_intent(home, True, by, f"{by} by {pr._user()}")
    else:
        env = saved_environment(home)
    try:
        log_from = home.log.stat().st_size
    except OSError:
        log_from = 0
    proc = start(supervisor_argv(exp_path, runs=runs, hold=hold, exit_when_idle=exit_when_idle,
                                 chaos=chaos), home, env)
    if not wait:
        return pr.Presence("starting", proc.pid), True
    return wait_until_up(home, proc, log_from), True
