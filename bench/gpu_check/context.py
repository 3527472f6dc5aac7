"""What every step works with: its folders, the mode, its deadline, and the commands it runs.

The steps drive foldwatch as a user does, through its command line and the files under
results/. The console's own modules are named in CONSOLE_* below, the one place that does:
when one moves, change its name here.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

ROOT = Path(__file__).resolve().parents[2]

CONSOLE_CLI = "console.clients.cli"          # the `foldwatch` command, run as `python -m`
CONSOLE_NVML = "console.gpu.nvml"            # NvmlSampler: the console's own GPU sampler
CONSOLE_GPU_OWNERS = "console.gpu.owners"    # attribute(), OurRun: pid match + container fallback

T = TypeVar("T")


def console_module(name: str):
    return importlib.import_module(name)


class StepError(Exception):
    """A step cannot go on; the message says why."""


class Ctx:
    """One group's view of the run: where to work, the mode, its deadline, the child
    environment. `state` is what the parent process handed over (cli.py)."""

    def __init__(self, state: dict, folder: Path, deadline: float) -> None:
        self.work = Path(state["work"])
        self.folder = folder                      # the steps' JSON files and logs
        self.gpu = state["mode"] == "gpu"
        self.index = state["gpu"]
        self.skip_why = state["skip_why"]
        self.nnunet_epochs = state["nnunet_epochs"]
        self.nnunet_iterations = state["nnunet_iterations"]
        self.deadline = deadline
        self.env = child_env(state)
        self.data = self.work / "data" / "Dataset900_Demo"
        self.t_group = time.monotonic()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, argv: list[str], *, timeout: float | None = None, log: Path | None = None,
            env: dict | None = None, check: bool = True, at_least: float = 1.0
            ) -> subprocess.CompletedProcess:
        """argv to the end, within the step's deadline (but `at_least` s); output to `log`
        (or captured)."""
        limit = max(at_least, min(timeout or 1e9, self.left()))
        t = time.monotonic()
        out = open(log, "ab") if log else subprocess.PIPE
        p = subprocess.Popen(argv, cwd=ROOT, env=env or self.env, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            stdout, _ = p.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            killpg(p.pid)
            p.wait()
            raise StepError(f"{short(argv)} did not finish within {limit:.0f} s")
        finally:
            if log:
                out.close()
        text = (log.read_text(errors="replace") if log
                else (stdout or b"").decode(errors="replace"))
        print(f"{time.monotonic() - self.t_group:6.1f}s  {short(argv)}: exit {p.returncode} "
              f"after {time.monotonic() - t:.1f} s", flush=True)
        if check and p.returncode != 0:
            raise StepError(f"{short(argv)} exited {p.returncode}: {tail(text)}")
        return subprocess.CompletedProcess(argv, p.returncode, text, "")

    def spawn(self, argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
        with open(log, "ab") as out:
            return subprocess.Popen(argv, cwd=ROOT, env=env or self.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def wait(self, what: str, probe: Callable[[], T], timeout: float, *, every: float = 0.3,
             reserve: float = 0.0, detail: Callable[[], str] | None = None) -> T:
        """probe() until it gives something true, within `timeout` s and `reserve` s before
        the deadline; StepError naming `what` (and `detail()`) otherwise."""
        t0 = time.monotonic()
        until = min(t0 + timeout, self.deadline - reserve)
        while True:
            got = probe()
            if got:
                return got
            if time.monotonic() > until:
                raise StepError(f"{what}: not within {time.monotonic() - t0:.0f} s"
                                + (f" ({detail()})" if detail else ""))
            time.sleep(every)

    def need_data(self) -> None:
        if not (self.data / "dataset.json").exists():
            raise StepError(f"no demo dataset in {self.data}: the dataset step did not make it "
                            "(see its result)")


def child_env(state: dict) -> dict[str, str]:
    """The environment of every command the check runs."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    # the supervisors started here note themselves in the work folder, not in the user's
    # `foldwatch ls`
    env["XDG_STATE_HOME"] = str(Path(state["work"]) / "state")
    if state["forced_dry"]:        # a GPU machine asked for the dry run: keep off the GPU
        env.update(CUDA_VISIBLE_DEVICES="", FOLDWATCH_NO_NVML="1")
    if state["mode"] != "gpu":     # groups run side by side: one core each (the benches'
        env["FOLDWATCH_CPU_THREADS"] = "1"      # own default is 2)
    return env


def short(argv: list[str]) -> str:
    text = " ".join(str(a) for a in argv)
    return text if len(text) < 120 else text[:117] + "..."


def tail(text: str, n: int = 6) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])[-600:]


def killpg(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def fw(*args: str) -> list[str]:
    """The `foldwatch` command (its module: works without `pip install -e .`)."""
    return [sys.executable, "-m", CONSOLE_CLI, *map(str, args)]


def trainer(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainer", *map(str, args)]


def json_out(text: str) -> dict:
    """The JSON object a command printed after whatever lines came first."""
    return json.loads(text[text.index("{"):])


def read_jsonl(path: Path) -> list[dict]:
    out = []
    try:
        for line in path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass              # a line being written
    except OSError:
        pass
    return out


def events(run_dir: str | Path | None, event: str, since: float = 0.0) -> list[dict]:
    """A run's `event` events from its metrics.jsonl, at `since` or later."""
    if not run_dir:
        return []
    return [e for e in read_jsonl(Path(run_dir) / "metrics.jsonl")
            if e.get("event") == event and e.get("t", 0) >= since]


def smi(*query: str) -> list[list[str]] | None:
    """nvidia-smi --query-...: rows of fields, None when nvidia-smi is missing or fails."""
    try:
        r = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    return [[f.strip() for f in ln.split(",")] for ln in r.stdout.strip().splitlines()
            if ln.strip()]


def num(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def write_yaml(path: Path, data: dict) -> Path:
    import yaml
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def proc_env(pid: int) -> dict | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    return dict(kv.split("=", 1) for kv in raw.decode(errors="replace").split("\0") if "=" in kv)
