"""Runs jobs as local subprocesses, ARCHITECTURE.md section 5: argument list, own session,
stdout/stderr appended to the run folder, SIGTERM/SIGKILL to the whole process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import psutil

from console.backends.base import LAUNCH_TOKEN_ENV, Backend, Handle, LaunchSpec
from contracts.processes import same_process
from contracts.layout import run_files


class LocalBackend(Backend):
    """Runs are processes of this machine, each in a session of its own."""

    def __init__(self) -> None:
        self._children: dict[int, subprocess.Popen] = {}

    def log_paths(self, run_dir: Path) -> dict[str, Path]:
        return run_files(Path(run_dir))

    def submit(self, spec: LaunchSpec) -> Handle:
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        logs = self.log_paths(spec.run_dir)
        env = dict(os.environ)
        env.update(spec.env)
        with open(logs["stdout"], "ab") as out, open(logs["stderr"], "ab") as err:
            proc = subprocess.Popen(spec.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    env=env, start_new_session=True, close_fds=True)
        self._children[proc.pid] = proc
        try:
            ct = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            ct = 0.0
        return Handle(spec.key, proc.pid, ct, host=socket.gethostname())

    def adopt(self, key: str, record: dict, run_dir: Path) -> Handle | None:
        """The live local process `record` names (pid + create_time), else None."""
        h = Handle.from_record(key, record)
        if h is None or not h.pid or not same_process(h.pid, h.create_time):
            return None
        if h.host not in (None, socket.gethostname()):
            return None                 # a pid on another machine is not ours to watch
        return h

    def find_launch(self, key: str, token: str, run_dir: Path) -> Handle | None:
        """The process (of this user) whose environment carries `token`: a launch whose pid
        was never recorded, found even while it is still importing its libraries."""
        me = os.getuid()
        for p in psutil.process_iter(["uids", "create_time"]):
            try:
                if p.info["uids"] is None or p.info["uids"].real != me:
                    continue
                if p.environ().get(LAUNCH_TOKEN_ENV) != token:
                    continue
                if p.status() == psutil.STATUS_ZOMBIE:
                    continue
                # its session leader is the process the launch started (children inherit the
                # environment too): adopt the leader, whose group is what stop/kill signal
                leader = psutil.Process(os.getsid(p.pid))
                if leader.environ().get(LAUNCH_TOKEN_ENV) == token:
                    p = leader
                return Handle(key, p.pid, p.create_time(), adopted=True,
                              host=socket.gethostname())
            except (psutil.Error, OSError):
                continue
        return None

    def describe(self, handle: Handle) -> dict:
        alive = same_process(handle.pid, handle.create_time)
        return {"pid": handle.pid, "host": handle.host or socket.gethostname(),
                "alive": alive, "adopted": handle.adopted}

    def poll(self, handle: Handle) -> tuple[bool, int | None]:
        proc = self._children.get(handle.pid)
        if proc is not None:
            code = proc.poll()
            if code is None:
                return False, None
            del self._children[handle.pid]
            return True, code
        return (not same_process(handle.pid, handle.create_time)), None

    def cancel(self, handle: Handle, force: bool = False) -> None:
        if not same_process(handle.pid, handle.create_time):
            return
        sig = signal.SIGKILL if force else signal.SIGTERM
        try:
            os.killpg(handle.pid, sig)      # the run leads its own session/group
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                os.kill(handle.pid, sig)
            except OSError:
                pass

    def process_ids(self, handle: Handle) -> set[int]:
        try:
            p = psutil.Process(handle.pid)
            return {handle.pid} | {c.pid for c in p.children(recursive=True)}
        except psutil.Error:
            return {handle.pid}

    def close(self) -> None:
        """Forget our children without touching them: runs outlive the supervisor."""
        self._children.clear()
