"""NVML through a scripted pynvml (the real exception classes) and against the real library."""

from __future__ import annotations

import pynvml
import pytest

from console.gpu.allocation import DeviceUse, gpu_slots
from console.gpu.nvml import RETRY_INIT_S, NvmlSampler
from contracts.experiment import Devices
from engine_helpers import FakeNvml, gpu


def err(code):
    return pynvml.NVMLError(code)


@pytest.mark.parametrize("code,words", [(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "no NVIDIA driver"),
                                        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "not loaded")])
def test_no_driver_is_cpu_mode(code, words):
    r = NvmlSampler(FakeNvml(init_error=err(code))).sample_now()
    assert r.available is False and r.gpus == [] and words in r.message


def test_zero_gpus_is_cpu_mode():
    r = NvmlSampler(FakeNvml(devices=[])).sample_now()
    assert r.available is False and "no NVIDIA GPU" in r.message


def test_fields_and_not_supported_fields_are_na():
    ns = err(pynvml.NVML_ERROR_NOT_SUPPORTED)
    nv = FakeNvml(devices=[gpu("A", util=55, mem=(2048, 8192), procs=[(4242, 1024)]),
                           gpu("B", temp=ns, power_mw=ns, limit_mw=ns, util=ns, procs=ns)])
    r = NvmlSampler(nv).sample_now()
    a, b = r.gpus
    assert r.available is True
    assert (a.name, a.util_pct, a.mem_used_mb, a.mem_total_mb, a.temp_c, a.power_w,
            a.power_limit_w) == ("A", 55.0, 2048, 8192, 40.0, 100.0, 300.0)
    assert [(p.pid, p.used_mb) for p in a.processes] == [(4242, 1024)]
    assert b.name == "B" and b.mem_total_mb == 24000
    assert (b.util_pct, b.temp_c, b.power_w, b.power_limit_w, b.processes) == (None,) * 5
    assert not b.lost


def test_lost_gpu_is_marked_and_stays_lost():
    nv = FakeNvml(devices=[gpu("A"), gpu("B")])
    s = NvmlSampler(nv)
    assert not any(g.lost for g in s.sample_now().gpus)
    nv.devices[1]["lost"] = True
    r = s.sample_now()
    assert [g.lost for g in r.gpus] == [False, True] and "GPU 1 lost" in r.message
    nv.devices[1]["lost"] = False            # NVML may answer again; the device stays lost
    assert s.sample_now().gpus[1].lost


def test_driver_library_mismatch_is_reported_and_retried():
    now = [1000.0]
    nv = FakeNvml(devices=[gpu("A")], init_error=err(pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH))
    s = NvmlSampler(nv, clock=lambda: now[0])
    r = s.sample_now()
    assert r.available is None and "mismatch" in r.message
    s.sample_now()
    assert nv.inits == 1                     # not retried before the delay
    nv.init_error = None
    now[0] += RETRY_INIT_S + 1
    r = s.sample_now()
    assert nv.inits == 2 and r.available is True and r.gpus[0].name == "A"


def test_sampler_thread_caches_readings():
    s = NvmlSampler(FakeNvml(devices=[gpu("A")]), interval=0.01).start()
    try:
        import time
        deadline = time.monotonic() + 5
        while s.latest().available is not True:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert s.latest().gpus[0].name == "A"
    finally:
        s.close()


def test_gpu_slots_respect_foreign_processes_memory_and_own_table():
    dev = Devices(runs_per_gpu=2, min_free_vram_gb=4)
    nv = FakeNvml(devices=[gpu("A", mem=(1000, 24000), procs=[(999, 500)]),   # foreign
                           gpu("B", mem=(1000, 24000)),
                           gpu("C", mem=(22000, 24000))])                     # too full
    r = NvmlSampler(nv).sample_now()
    assert gpu_slots(dev, r, None, []) == ["gpu1"]
    assert gpu_slots(Devices(share_with_foreign=True), r, None, []) == ["gpu0", "gpu1"]
    assert gpu_slots(dev, r, {0, 2}, []) == []
    # one of ours on gpu1, not yet allocated: a second fits (24 GB free > 2 x 4 GB)
    assert gpu_slots(dev, r, None, [DeviceUse("gpu1", {123})]) == ["gpu1"]
    assert gpu_slots(dev, r, None, [DeviceUse("gpu1", {1}), DeviceUse("gpu1", {2})]) == []
    assert gpu_slots(Devices(runs_per_gpu=2, min_free_vram_gb=12), r, None,
                     [DeviceUse("gpu1", {123})]) == []   # 23 GB free - 12 pending < 12
    # our own process on A is not foreign
    assert "gpu0" in gpu_slots(dev, r, None, [DeviceUse("gpu0", {999})])


@pytest.mark.gpu
def test_real_nvml_reads_every_gpu():
    r = NvmlSampler().sample_now()
    assert r.available is True and r.gpus
    for g in r.gpus:
        assert g.mem_total_mb and g.mem_total_mb > 0 and g.name
        assert g.processes is None or all(p.pid > 0 for p in g.processes)


def test_process_lists_follow_the_real_api_and_errors_are_logged_once(caplog):
    """Compute + graphics processes merged by pid; an older driver's missing _v3 falls back;
    usedGpuMemory None stays unknown; a failing call is logged once with its cause."""
    ns = err(pynvml.NVML_ERROR_NOT_SUPPORTED)
    nv = FakeNvml(devices=[gpu("NVIDIA H100 80GB HBM3", procs=[(4242, 1024), (77, None)],
                               graphics=[(4242, 2048)]),
                           gpu("B", temp=ns)],
                  missing={"nvmlDeviceGetComputeRunningProcesses_v3",
                           "nvmlDeviceGetGraphicsRunningProcesses_v3"})
    s = NvmlSampler(nv)
    s.describe = lambda pid: ("alice", f"python train.py #{pid}", pid != 77)
    with caplog.at_level("WARNING", logger="foldwatch.nvml"):
        r = s.sample_now()
        for _ in range(3):
            s.sample_now()
    a = r.gpus[0]
    assert a.name == "NVIDIA H100 80GB HBM3"
    assert [(p.pid, p.used_mb, p.user, p.visible) for p in a.processes] == [
        (4242, 2048, "alice", True), (77, None, "alice", False)]
    r = s.sample_now()
    assert r.problems == ["gpu1: nvmlDeviceGetTemperature failed: Not Supported "
                          "(NVMLError_NotSupported)"]
    assert len([m for m in caplog.messages if "nvmlDeviceGetTemperature" in m]) == 1
    s.close()
    with pytest.raises(pynvml.NVMLError_Uninitialized):     # like the real module after shutdown
        nv.nvmlDeviceGetCount()
