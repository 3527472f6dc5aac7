"""NVIDIA GPU sampling through NVML (nvidia-ml-py, `import pynvml`), off the caller's thread.

No driver or no GPU is a normal state (CPU mode). A failing call gives None ("n/a") for that
field only; a GPU that reports itself lost is marked lost; a driver/library mismatch is
reported and NVML is initialised again later.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

RETRY_INIT_S = 30.0
log = logging.getLogger("foldwatch.nvml")
# Process lists: the newest API first; an older driver lacks the newer symbols.
PROCESS_CALLS = (("nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2",
                  "nvmlDeviceGetComputeRunningProcesses"),
                 ("nvmlDeviceGetGraphicsRunningProcesses_v3", "nvmlDeviceGetGraphicsRunningProcesses_v2",
                  "nvmlDeviceGetGraphicsRunningProcesses"))


def describe_process(pid: int) -> tuple[str | None, str | None, bool]:
    """(user, short command, visible) of a pid, via psutil; not visible inside a container
    when NVML reports host pids."""
    try:
        import psutil
        p = psutil.Process(pid)
        with p.oneshot():
            cmd = " ".join(p.cmdline()) or p.name()
            try:
                user = p.username()
            except (psutil.Error, KeyError):
                user = None
        return user, cmd[:120], True
    except ImportError:
        return None, None, True
    except Exception:              # NoSuchProcess, AccessDenied, zombie: not ours to know
        return None, None, os.path.exists(f"/proc/{pid}")


@dataclass
class GpuProcess:
    pid: int
    used_mb: float | None
    user: str | None = None        # psutil, when the pid is visible from here
    command: str | None = None
    visible: bool = True           # False: not in our pid namespace (NVML gives host pids)


@dataclass
class GpuSample:
    index: int
    name: str | None = None
    uuid: str | None = None
    util_pct: float | None = None
    mem_used_mb: float | None = None
    mem_total_mb: float | None = None
    temp_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    lost: bool = False
    processes: list[GpuProcess] | None = field(default_factory=list)  # None: n/a


@dataclass
class NvmlReading:
    """One sampling pass. `available` False = no NVML at all: the console runs in CPU mode.
    `available` None = unknown for now (e.g. driver/library mismatch): retried later."""
    t: float
    available: bool | None
    gpus: list[GpuSample]
    message: str | None = None
    problems: list[str] = field(default_factory=list)   # NVML calls that failed, with cause


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class NvmlSampler:
    """Samples every `interval` seconds in a daemon thread; `latest()` is a cheap read."""

    def __init__(self, nvml: Any = None, interval: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._nvml = nvml
        self.interval = interval
        self.clock = clock
        self._initialised = False
        self._next_init = 0.0
        self._lost: set[int] = set()
        self._static: dict[int, tuple[str | None, str | None]] = {}  # name, uuid: cached
        self._problems: dict[str, str] = {}     # each failing call logged once, with its cause
        self.describe = describe_process
        self._latest = NvmlReading(clock(), None, [], "sampling GPUs...")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- module boundary ----------------------------------------------------------------
    def _module(self):
        if self._nvml is None:
            import pynvml                   # lazily: `foldwatch --help` never pays for it
            self._nvml = pynvml
        return self._nvml

    def _init(self) -> NvmlReading | None:
        """Initialise NVML; a reading describing why not, or None on success."""
        nv = self._module()
        now = self.clock()
        try:
            nv.nvmlInit()
            self._initialised = True
            return None
        except nv.NVMLError_LibraryNotFound:
            return NvmlReading(now, False, [], "no NVIDIA driver (NVML library not found): CPU mode")
        except nv.NVMLError_DriverNotLoaded:
            return NvmlReading(now, False, [], "NVIDIA driver not loaded: CPU mode")
        except nv.NVMLError_NoPermission:
            return NvmlReading(now, False, [], "no permission to use NVML: CPU mode")
        except nv.NVMLError_LibRmVersionMismatch:
            self._next_init = now + RETRY_INIT_S
            return NvmlReading(now, None, [], "NVIDIA driver/library version mismatch "
                               "(reboot or reload the driver); retrying")
        except nv.NVMLError as e:
            self._next_init = now + RETRY_INIT_S
            return NvmlReading(now, None, [], f"NVML init failed: {_text(e)}; retrying")

    def sample_now(self) -> NvmlReading:
        """One sampling pass on the calling thread (the background thread calls this)."""
        now = self.clock()
        if os.environ.get("FOLDWATCH_NO_NVML"):
            return self._store(NvmlReading(now, False, [], "NVML disabled (FOLDWATCH_NO_NVML): CPU mode"))
        nv = self._module()
        if not self._initialised:
            if now < self._next_init:
                return self._latest
            failed = self._init()
            if failed is not None:
                return self._store(failed)
        try:
            count = nv.nvmlDeviceGetCount()
        except nv.NVMLError_LibRmVersionMismatch:
            self._shutdown()
            self._next_init = now + RETRY_INIT_S
            return self._store(NvmlReading(now, None, [], "NVIDIA driver/library version "
                                           "mismatch (reboot or reload the driver); retrying"))
        except nv.NVMLError as e:
            self._shutdown()
            self._next_init = now + RETRY_INIT_S
            return self._store(NvmlReading(now, None, [], f"NVML error: {_text(e)}; retrying"))
        if count == 0:
            return self._store(NvmlReading(now, False, [], "no NVIDIA GPU found: CPU mode"))
        gpus = [self._device(nv, i) for i in range(count)]
        lost = [g.index for g in gpus if g.lost]
        msg = f"GPU {', '.join(map(str, lost))} lost" if lost else None
        return self._store(NvmlReading(now, True, gpus, msg, list(self._problems.values())))

    def _problem(self, i: int, fn: str, e: BaseException) -> None:
        key = f"gpu{i} {fn}"
        if key not in self._problems:
            self._problems[key] = f"gpu{i}: {fn} failed: {_text(e)} ({type(e).__name__})"
            log.warning("%s; shown as n/a from now on", self._problems[key])

    def _device(self, nv, i: int) -> GpuSample:
        s = GpuSample(index=i)
        if i in self._lost:
            s.lost = True
            s.processes = []
            return s
        lost = False

        def q(fn, *args):
            nonlocal lost
            try:
                return fn(*args)
            except nv.NVMLError_GpuIsLost:
                lost = True
            except nv.NVMLError as e:
                self._problem(i, getattr(fn, "__name__", str(fn)), e)
            return None

        h = q(nv.nvmlDeviceGetHandleByIndex, i)
        if h is None:
            s.lost = lost
            if lost:
                self._lost.add(i)
            s.processes = None
            return s
        if i not in self._static:
            name, uuid = q(nv.nvmlDeviceGetName, h), q(nv.nvmlDeviceGetUUID, h)
            if name is not None and uuid is not None:
                self._static[i] = (_text(name), _text(uuid))
            s.name = _text(name) if name is not None else None
            s.uuid = _text(uuid) if uuid is not None else None
        else:
            s.name, s.uuid = self._static[i]
        util = q(nv.nvmlDeviceGetUtilizationRates, h)
        s.util_pct = float(util.gpu) if util is not None else None
        mem = q(nv.nvmlDeviceGetMemoryInfo, h)
        if mem is not None:
            s.mem_used_mb, s.mem_total_mb = mem.used / 2**20, mem.total / 2**20
        temp = q(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
        s.temp_c = float(temp) if temp is not None else None
        power = q(nv.nvmlDeviceGetPowerUsage, h)
        s.power_w = power / 1000.0 if power is not None else None
        limit = q(nv.nvmlDeviceGetEnforcedPowerLimit, h)
        s.power_limit_w = limit / 1000.0 if limit is not None else None
        s.processes = self._processes(nv, i, h, q)
        if lost:
            # "GPU is lost" does not heal without a reset: keep it marked, stop asking it.
            self._lost.add(i)
            return GpuSample(index=i, name=s.name, uuid=s.uuid, lost=True, processes=[])
        return s

    def _processes(self, nv, i: int, h, q) -> list[GpuProcess] | None:
        """Compute and graphics processes (one entry per pid), with owner and command."""
        seen: dict[int, GpuProcess] = {}
        answered = False
        for names in PROCESS_CALLS:
            for name in names:
                fn = getattr(nv, name, None)
                if fn is None:
                    continue
                try:
                    procs = fn(h)
                except nv.NVMLError_FunctionNotFound:
                    continue               # an older driver: try the older call
                except nv.NVMLError as e:
                    if not isinstance(e, nv.NVMLError_GpuIsLost):
                        self._problem(i, name, e)
                    return None            # part of the list is unknown: say n/a, not "none"
                answered = True
                for p in procs:
                    used = getattr(p, "usedGpuMemory", None)
                    mb = used / 2**20 if used is not None else None
                    old = seen.get(int(p.pid))
                    if old is None:
                        seen[int(p.pid)] = GpuProcess(int(p.pid), mb)
                    elif mb is not None:
                        old.used_mb = max(old.used_mb or 0.0, mb)
                break
        if not answered:
            return None
        for p in seen.values():
            p.user, p.command, p.visible = self.describe(p.pid)
        return list(seen.values())

    def _store(self, reading: NvmlReading) -> NvmlReading:
        with self._lock:
            self._latest = reading
        return reading

    def _shutdown(self) -> None:
        if self._initialised:
            try:
                self._module().nvmlShutdown()
            except Exception:
                pass
            self._initialised = False

    # -- thread ---------------------------------------------------------------------------
    def latest(self) -> NvmlReading:
        with self._lock:
            return self._latest

    def start(self) -> "NvmlSampler":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample_now()
            except Exception as e:   # never let the sampler die: report and keep going
                self._store(NvmlReading(self.clock(), None, [], f"GPU sampling failed: {e}"))
            self._stop.wait(self.interval)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._shutdown()
