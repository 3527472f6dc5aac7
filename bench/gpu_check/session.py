"""One experiment under foldwatch's supervision for the length of a step, and none after it.

`foldwatch up EXP --headless` (or `foldwatch demo DIR --headless`) is the experiment's
supervisor in the foreground: it launches the runs, restarts dead ones and exits when every
run has ended. A step ends it with two commands (docs/console-engine.md, "The supervisor"):

- `foldwatch down EXP`: supervision no longer wanted. `up --headless` leaves it wanted when it
  finishes by itself, and any later `foldwatch` command on the experiment (`status`
  included) would start a detached supervisor again, to linger on the finished experiment;
  so `down` also comes right after a headless run ends, before its status is read.
- `foldwatch stop EXP`, when the runs may still be going: after `down`, a temporary supervisor
  that never launches adopts them, stops them and exits.

Whatever survives both is killed by the runner (runner.cleanup: any process of this run that
names the group's folder).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from .context import Ctx, StepError, fw, json_out, killpg, tail

PIPELINE_OFF = {"evaluate": False, "find_best": False, "postprocess": False,
                "predict_test": False}


class Supervised:
    """`argv` (default `foldwatch up EXP --headless`) run for one step, ended by end()."""

    def __init__(self, ctx: Ctx, exp: Path, log: Path, env: dict | None = None,
                 argv: list[str] | None = None) -> None:
        self.ctx, self.exp, self.log, self.env = ctx, exp, log, env or ctx.env
        self.argv = argv or fw("up", exp, "--headless")
        self.what = f"foldwatch {self.argv[3]} --headless"
        self.proc: subprocess.Popen | None = None
        self.ended_by_itself = False
        self.put_down = False

    def __enter__(self) -> "Supervised":
        return self

    def __exit__(self, *exc) -> None:
        self.end()

    def start(self) -> subprocess.Popen:
        """In the background: the step watches the runs meanwhile."""
        self.proc = self.ctx.spawn(self.argv, self.log, self.env)
        return self.proc

    def running(self) -> bool:
        """Still supervising; once it has exited by itself, supervision is put down."""
        if self.proc is None or self.proc.poll() is None:
            return self.proc is not None
        self.ended_by_itself = True
        self.down()
        return False

    def check_running(self) -> None:
        if not self.running():
            raise StepError(f"{self.what} exited {self.proc.returncode}: "
                            + tail(self.log.read_text(errors="replace")))

    def run(self, timeout: float) -> float:
        """To its end; its wall time, s. StepError unless it exits 0 (every run completed)."""
        t = time.monotonic()
        r = self.ctx.run(self.argv, timeout=timeout, log=self.log, env=self.env, check=False)
        self.ended_by_itself = True
        self.down()
        if r.returncode != 0:
            raise StepError(f"{self.exp.stem}: {self.what} exited {r.returncode}: "
                            + tail(r.stdout))
        return time.monotonic() - t

    def status(self) -> dict:
        """`foldwatch status --json`; on a GPU, again while its sampler has not read the GPUs
        yet (NVML's first initialisation can take longer than the command waits for it)."""
        for _ in range(5):
            st = json_out(self._foldwatch("status", "--json", check=True).stdout)
            if not self.ctx.gpu or st.get("gpus"):
                return st
        return st

    def stop_run(self, key: str) -> None:
        """`foldwatch stop --run KEY --no-wait`: the supervisor stops that run, the rest go on."""
        self._foldwatch("stop", "--run", key, "--no-wait", check=True)

    def down(self) -> None:
        """`foldwatch down` (once): no supervisor is started again for this experiment."""
        if not self.put_down:
            self.put_down = True
            self._foldwatch("down", at_least=15)

    def end(self) -> None:
        """Supervision put down, the runs stopped unless it ended by itself, its process gone."""
        self.down()
        if not self.ended_by_itself:
            self._foldwatch("stop", at_least=40)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                killpg(self.proc.pid)
                self.proc.wait()

    def _foldwatch(self, command: str, *args: str, check: bool = False, at_least: float = 1.0
                   ) -> subprocess.CompletedProcess:
        try:
            return self.ctx.run(fw(command, self.exp, *args), timeout=60, env=self.env,
                                check=check, at_least=at_least)
        except StepError:
            if check:
                raise
            # out of time: the runner ends what is left (every process naming the folder)
            return subprocess.CompletedProcess([], 1, "", "")


def folds_of(st: dict) -> dict[str, dict]:
    """The fold runs of a `foldwatch status --json`, by key."""
    return {r["key"]: r for r in st["runs"] if r["kind"] == "fold"}


def gpu_of(st: dict, index: int) -> dict | None:
    return next((g for g in st.get("gpus") or [] if g["index"] == index), None)
