"""Shared helpers for the console engine tests: a tiny experiment, the stand-in trainer,
a scripted pynvml built from the real library's exception classes, and a poll loop."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pynvml
import yaml

from console.backends.base import Backend

REPO = Path(__file__).resolve().parents[1]
FAKE = REPO / "tests" / "fake_trainer.py"


def write_experiment(tmp: Path, *, folds=(0, 1), configurations=("2d",), epochs=3,
                     watchdog=None, devices=None, pipeline=None) -> Path:
    data = {
        "experiment": "t", "dataset": "data", "results": "results", "folds": list(folds),
        "configurations": {c: {"epochs": epochs, "batch_size": 8, "iterations_per_epoch": 2}
                           for c in configurations},
        "devices": {"cpu_slots": 2, **(devices or {})},
        "watchdog": {"stall_timeout_s": 30, "max_restarts": 3, "backoff_initial_s": 0.05,
                     "backoff_max_s": 0.2, "grace_period_s": 2, **(watchdog or {})},
    }
    if pipeline is not None:
        data["pipeline"] = pipeline
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def use_fake_trainer(monkeypatch, tmp: Path, script: dict | None = None) -> Path:
    """Point FOLDWATCH_TRAINER at the stand-in; returns the script file."""
    sfile = tmp / "script.json"
    sfile.write_text(json.dumps(script or {}))
    monkeypatch.setenv("FOLDWATCH_TRAINER", f"{sys.executable} {FAKE}")
    monkeypatch.setenv("FAKE_TRAINER_SCRIPT", str(sfile))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return sfile


def calls(run_dir: Path) -> list[dict]:
    f = run_dir / "fake_calls.jsonl"
    return [json.loads(l) for l in f.read_text().splitlines()] if f.exists() else []


def poll_until(engine, predicate, timeout: float = 60.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    snap = engine.poll()
    while not predicate(snap):
        if time.monotonic() > deadline:
            states = {r.key: (r.state, r.message) for r in snap.runs}
            raise AssertionError(f"timed out; runs: {states}")
        time.sleep(every)
        snap = engine.poll()
    return snap


def sigkill_mid_training(engine, run, first: int, last: int | None = None,
                         timeout: float = 240.0, every: float = 0.1) -> int:
    """Wait until `run` has a process and an epoch in [first, last), SIGKILL its process
    group (the trainer and its workers), return that epoch."""
    poll_until(engine, lambda s: (run.metrics.epoch or 0) >= first and run.handle is not None
               and (last is None or run.metrics.epoch < last), timeout=timeout, every=every)
    done = run.metrics.epoch
    os.killpg(run.handle.pid, signal.SIGKILL)
    return done


def run_to_success(engine, timeout: float, every: float = 0.2):
    """Poll until every run is finished; the snapshot, asserting that all succeeded."""
    snap = poll_until(engine, lambda s: s.finished, timeout=timeout, every=every)
    assert snap.succeeded, [(r.key, r.state, r.message) for r in snap.runs]
    return snap


def stop_and_close(engine, timeout: float = 60.0) -> None:
    """Teardown for tests with real trainers: stop every run, wait for them to go, close."""
    engine.stop_all()
    deadline = time.monotonic() + timeout
    while any(r.handle for r in engine.runs.values()) and time.monotonic() < deadline:
        engine.poll()
        time.sleep(0.2)
    engine.close()


def run_state(snap, key: str) -> str:
    return next(r.state for r in snap.runs if r.key == key)


def actions(engine, key: str | None = None) -> list[str]:
    return [d.action for d in engine.decisions.recent if key is None or d.run_key == key]


class FakeNvml(SimpleNamespace):
    """pynvml's surface, scripted: `init_error`, per-device dicts, errors per field.

    Follows the real module: the same function names (compute and graphics process lists,
    `_v3`/`_v2` variants; `missing` names the functions an older driver lacks, which raise
    NVMLError_FunctionNotFound), NVMLError_Uninitialized before nvmlInit or after
    nvmlShutdown, NVMLError_InvalidArgument for a bad index, `usedGpuMemory` None when NVML
    cannot tell."""

    def __init__(self, devices=None, init_error=None, missing=()):
        super().__init__()
        for name in dir(pynvml):
            if name.startswith("NVMLError") or name.startswith("NVML_"):
                setattr(self, name, getattr(pynvml, name))
        self.devices = devices or []
        self.init_error = init_error
        self.count_error = None
        self.inits = 0
        self.live = False
        self.missing = set(missing)

    def _up(self, fn=None):
        if not self.live:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        if fn in self.missing:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)

    def nvmlInit(self):
        self.inits += 1
        if self.init_error is not None:
            raise self.init_error
        self.live = True

    def nvmlShutdown(self):
        self._up()
        self.live = False

    def nvmlDeviceGetCount(self):
        self._up()
        if self.count_error is not None:
            raise self.count_error
        return len(self.devices)

    def _field(self, h, name):
        self._up()
        value = self.devices[h].get(name)
        if isinstance(value, BaseException):
            raise value
        if self.devices[h].get("lost"):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return value

    def nvmlDeviceGetHandleByIndex(self, i):
        self._up()
        if not 0 <= i < len(self.devices):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return i

    def nvmlDeviceGetName(self, h):
        return self._field(h, "name")

    def nvmlDeviceGetUUID(self, h):
        return self._field(h, "uuid")

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=self._field(h, "util"), memory=0)

    def nvmlDeviceGetMemoryInfo(self, h):
        used, total = self._field(h, "mem")
        return SimpleNamespace(used=used * 2**20, total=total * 2**20, free=(total - used) * 2**20)

    def nvmlDeviceGetTemperature(self, h, sensor):
        return self._field(h, "temp")

    def nvmlDeviceGetPowerUsage(self, h):
        return self._field(h, "power_mw")

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return self._field(h, "limit_mw")

    def _procs(self, fn, h, key):
        self._up(fn)
        return [SimpleNamespace(pid=p, usedGpuMemory=None if mb is None else mb * 2**20,
                                gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
                for p, mb in self._field(h, key)]

    def nvmlDeviceGetComputeRunningProcesses_v3(self, h):
        return self._procs("nvmlDeviceGetComputeRunningProcesses_v3", h, "procs")

    def nvmlDeviceGetComputeRunningProcesses_v2(self, h):
        return self._procs("nvmlDeviceGetComputeRunningProcesses_v2", h, "procs")

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return self._procs("nvmlDeviceGetComputeRunningProcesses", h, "procs")

    def nvmlDeviceGetGraphicsRunningProcesses_v3(self, h):
        return self._procs("nvmlDeviceGetGraphicsRunningProcesses_v3", h, "graphics")

    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, h):
        return self._procs("nvmlDeviceGetGraphicsRunningProcesses_v2", h, "graphics")

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):
        return self._procs("nvmlDeviceGetGraphicsRunningProcesses", h, "graphics")


def gpu(name="Fake GPU", util=10, mem=(1000, 24000), procs=(), **kw) -> dict:
    d = {"name": name, "uuid": f"GPU-{name}", "util": util, "mem": mem, "temp": 40,
         "power_mw": 100000, "limit_mw": 300000,
         "procs": procs if isinstance(procs, BaseException) else list(procs), "graphics": []}
    d.update(kw)
    return d


def cpu_sampler():
    """The real sampler over a pynvml without a driver: CPU mode."""
    from console.gpu.nvml import NvmlSampler
    return NvmlSampler(FakeNvml(init_error=pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)),
                       interval=0.05)


class ScriptedBackend(Backend):
    """A backend without processes: the test says when a run exits and writes its log."""

    def __init__(self) -> None:
        self.next_pid = 1000
        self.exits: dict[int, int | None] = {}     # pid -> exit code once finished
        self.submitted: list = []                   # LaunchSpecs, in order
        self.cancels: list[tuple[int, bool]] = []
        self.adoptable: dict[str, dict] = {}        # key -> record adopt() accepts

    def submit(self, spec):
        from console.backends.base import Handle
        self.next_pid += 1
        self.exits[self.next_pid] = None
        self.submitted.append(spec)
        return Handle(spec.key, self.next_pid, 1.0, host="scripted")

    def exit(self, handle, code: int) -> None:
        self.exits[handle.pid] = code

    def poll(self, handle):
        code = self.exits.get(handle.pid)
        return (code is not None), code

    def cancel(self, handle, force: bool = False) -> None:
        self.cancels.append((handle.pid, force))
        self.exits[handle.pid] = -9 if force else -15

    def adopt(self, key, record, run_dir):
        from console.backends.base import Handle
        if key in self.adoptable and record.get("pid") == self.adoptable[key].get("pid"):
            return Handle.from_record(key, record)
        return None

    def describe(self, handle) -> dict:
        return {"pid": handle.pid}

    def log_paths(self, run_dir):
        from contracts.layout import run_files
        return run_files(run_dir)

    def process_ids(self, handle) -> set[int]:
        return {handle.pid}


class Clock:
    """An injectable clock the test moves by hand."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def real_trainer_experiment(tmp: Path, monkeypatch, name: str, configurations: dict,
                            folds, pipeline: dict, cpu_slots: int = 1) -> Path:
    """The demo's experiment file over a freshly generated demo dataset, for the REAL
    trainer (`python -m trainer`, not the stand-in): tiny configurations, one thread a run."""
    import subprocess
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("FOLDWATCH_NO_NVML", "1")
    monkeypatch.delenv("FOLDWATCH_TRAINER", raising=False)
    data = tmp / "data" / "Dataset900_Demo"
    subprocess.run([sys.executable, "-m", "trainer", "make-demo-data", str(data)], cwd=REPO,
                   check=True, capture_output=True, timeout=600)
    exp = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    exp.update(experiment=name, dataset=str(data), results=str(tmp / "results"),
               folds=list(folds), configurations=configurations, pipeline=pipeline)
    exp["devices"] = {"cpu_slots": cpu_slots, "cpu_threads_per_run": 1}
    exp["watchdog"].update(backoff_initial_s=0.2, backoff_max_s=1)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path
