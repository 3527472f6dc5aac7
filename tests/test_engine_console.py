"""What the engine gives the console: run-now priority kept across a re-attach, actions that
say what they did, a read-only console taking control, the detail fields of a run, the
results and the GPUs from the scripted NVML (scripted backend and clock: no processes)."""

from __future__ import annotations

import json
import os

import pytest

from console.engine.core import Engine
from console.gpu.nvml import NvmlSampler
from console.clients.tui.widgets.gpu_panel import panel_text
from console.clients.tui.screens.gpus import gpus_text
from contracts.jsonio import EventWriter
from contracts.layout import run_files
from engine_helpers import Clock, FakeNvml, ScriptedBackend, cpu_sampler, gpu, write_experiment

STAGES = {"evaluate": True, "find_best": False, "postprocess": False, "predict_test": False}


def log(eng, key, event, **fields):
    with EventWriter(run_files(eng.runs[key].job.run_dir)["metrics"]) as w:
        w.write(event, **fields)


def finish(eng, backend, key):
    log(eng, key, "start", stage=key, pid=1, host="x")
    log(eng, key, "end", status="completed", error=None, exit_code=0)
    backend.exit(eng.runs[key].handle, 0)


def running(eng):
    return [k for k, r in eng.runs.items() if r.handle is not None]


@pytest.fixture
def one_slot(tmp_path):
    path = write_experiment(tmp_path, configurations=("2d", "3d_fullres"), pipeline=STAGES,
                            devices={"cpu_slots": 1})
    backend = ScriptedBackend()
    eng = Engine(path, clock=Clock(), backend=backend, sampler=cpu_sampler())
    yield path, eng, backend
    eng.close()


def test_run_now_goes_first_once_its_inputs_are_done_and_survives_a_reattach(one_slot):
    path, eng, backend = one_slot
    for key in ("plan", "preprocess-2d", "preprocess-3d_fullres"):
        eng.poll()
        assert running(eng) == [key]
        finish(eng, backend, key)
    eng.poll()
    assert running(eng) == ["2d/0"]
    said = eng.run_stage_now("crossval-3d_fullres")
    assert said.startswith("crossval-3d_fullres goes ahead of the queued runs: it starts once "
                           "3d_fullres/0")
    saved = json.loads(eng.layout.state.read_text())["runs"]["crossval-3d_fullres"]
    assert saved["run_now"] is True
    view = next(r for r in eng.poll().runs if r.key == "crossval-3d_fullres")
    assert view.run_now and view.state == "queued"
    order = []
    for _ in range(4):                 # 2d/0 ends; the wish's inputs and the stage go first
        finish(eng, backend, running(eng)[0])
        eng.poll()
        order += running(eng)
    assert order == ["3d_fullres/0", "3d_fullres/1", "crossval-3d_fullres", "2d/1"]
    assert eng.runs["crossval-3d_fullres"].run_now is False       # granted
    # a wish made now is kept by the next console
    eng.stop("2d/1")
    eng.poll()                                          # it exits on SIGTERM: stopped
    assert eng.runs["2d/1"].state == "stopped"
    assert eng.run_stage_now("crossval-2d") == (
        "crossval-2d cannot run: its input 2d/1 is stopped and will not complete; resume it "
        "first (r). Nothing started")
    assert eng.runs["crossval-2d"].run_now is False
    eng.resume("2d/1")
    eng.run_stage_now("crossval-2d")
    eng.close()
    again = Engine(path, clock=Clock(), backend=ScriptedBackend(), sampler=cpu_sampler())
    try:
        assert again.runs["crossval-2d"].run_now is True
    finally:
        again.close()


def test_actions_say_what_really_happened(one_slot):
    _, eng, backend = one_slot
    eng.poll()                                         # plan runs, the rest is queued
    assert eng.stop("2d/0") == ("2d/0 taken out of the queue; it stays stopped until you "
                                "resume it (r)")
    assert eng.stop("2d/0") == "2d/0 is stopped: nothing to stop"
    assert eng.kill("2d/0") == "2d/0 has no process to kill (stopped)"
    assert eng.resume("2d/0") == "2d/0 queued again; it waits for preprocess-2d"
    assert eng.resume("2d/0") == "2d/0 is queued already: nothing to resume"
    assert eng.stop("plan").startswith("plan stopping: it saves a checkpoint and exits")
    assert eng.stop("plan") == "plan is stopping already"
    assert eng.launch(["2d"], [0]) == ("nothing new to launch: every chosen run is done, "
                                       "running or queued")
    assert eng.launch(["2d"], [1]) == "nothing new to launch: every chosen run is done, " \
                                      "running or queued"
    eng.stop("2d/1")
    assert eng.launch(["2d"], [0, 1]) == "queued 1 runs: 2d/1"
    assert eng.set_watchdog(False).startswith("watchdog off")


def test_run_views_carry_the_detail_fields_and_stage_outcomes(one_slot):
    _, eng, backend = one_slot
    eng.poll()
    log(eng, "2d/0", "start", configuration="2d", fold=0, pid=1, host="x", device="cpu",
        attempt=1, resumed_from=None, epochs=3, iterations_per_epoch=2, batch_size=8,
        effective_batch=16)
    log(eng, "2d/0", "iter", epoch=0, iter=1, loss=0.9, lr=0.01, samples_per_s=3.0,
        data_wait_frac=0.9)
    log(eng, "2d/0", "epoch", epoch=0, train_loss=0.8, val_loss=0.7, val_dice=0.5,
        val_dice_per_class=[0.6, 0.4], ema_dice=0.5, lr=0.01, epoch_s=4.0,
        data_wait_frac=0.25, peak_mem_mb=512.0)
    view = next(r for r in eng.poll().runs if r.key == "2d/0")
    assert view.samples_per_s == 16 * 2 / 4.0                  # whole epoch, not the iter's 3
    assert (view.epoch_s, view.data_wait_frac, view.peak_mem_mb) == (4.0, 0.25, 512.0)
    assert view.val_dice_per_class == [0.6, 0.4] and view.train_loss == 0.8
    assert view.run_dir == str(eng.layout.fold_dir("2d", 0))
    snap = eng.poll()
    assert snap.results is not None and snap.results.empty


def test_multi_gpu_panel_from_the_scripted_nvml(tmp_path):
    """Four GPUs: model names, a lost one, a foreign process with its user and command
    (this test's own process), and a process NVML reports with a host pid (container)
    attributed to our run on that GPU."""
    path = write_experiment(tmp_path, folds=(0,), pipeline={**STAGES, "evaluate": False})
    me = os.getpid()
    nv = FakeNvml(devices=[gpu("NVIDIA H100 80GB HBM3", util=91, mem=(30_000, 81_559),
                               procs=[(me, 2_000)]),
                           gpu("NVIDIA H100 80GB HBM3", util=0, mem=(500, 81_559)),
                           gpu("NVIDIA A100-SXM4-40GB", temp=pytest.importorskip("pynvml")
                               .NVMLError(pytest.importorskip("pynvml").NVML_ERROR_NOT_SUPPORTED)),
                           gpu("NVIDIA A100-SXM4-40GB", lost=True)])
    backend = ScriptedBackend()
    sampler = NvmlSampler(nv)
    eng = Engine(path, clock=Clock(), backend=backend, sampler=sampler)
    try:
        sampler.sample_now()
        eng.poll()
        finish(eng, backend, "plan")
        eng.poll()
        finish(eng, backend, "preprocess-2d")
        eng.poll()
        run = eng.runs["2d/0"]
        assert run.device == "gpu1"                   # gpu0 busy with a foreign process
        host_pid = 4_000_000                         # not in our /proc: a host pid
        nv.devices[1]["procs"] = [(host_pid, 9_000)]
        sampler.sample_now()
        snap = eng.poll()
        g0, g1, g2, g3 = snap.gpus
        assert g0.processes[0].run_key is None and g0.processes[0].command
        assert g0.processes[0].user                  # psutil's owner of this process
        assert [(p.pid, p.run_key) for p in g1.processes] == [(host_pid, "2d/0")]
        assert g3.lost and g2.temp_c is None
        assert any("nvmlDeviceGetTemperature failed: Not Supported" in p
                   for p in snap.nvml_problems)
        said = [d.reason for d in eng.decisions.recent if d.action == "nvml"]
        assert len(said) == 1 and "gpu2: nvmlDeviceGetTemperature failed" in said[0]   # once
        wide = panel_text(snap, 160).plain.splitlines()
        assert wide[0].startswith("gpu0 H100 80GB HBM3 ")
        assert f"foreign:{g0.processes[0].user}:{me}(2.0G)" in wide[0]
        assert "2d/0(8.8G)" in wide[1] and "LOST" in wide[3]
        assert not panel_text(snap, 80).plain.splitlines()[0].startswith("gpu0 H100")
        detail = gpus_text(snap).plain
        assert "gpu2  NVIDIA A100-SXM4-40GB" in detail and "python" in detail.lower()
        assert "nvmlDeviceGetTemperature failed" in detail
    finally:
        eng.close()
