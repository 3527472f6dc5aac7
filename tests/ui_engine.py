"""A scripted in-memory engine (console.protocol.model.EngineControl) with deterministic snapshots."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from contracts.layout import Layout
from console.protocol.model import (Decision, EpochPoint, GpuProcessView, GpuView, RunView, Snapshot,
                                    SupervisorView)

T0 = 1_800_000_000.0     # a fixed clock: no wall time reaches the screen


def demo_runs(cpu_mode: bool = False) -> list[RunView]:
    runs = []
    states = ["running", "running", "backoff", "completed", "queued"]
    for cfg in ("2d", "3d_fullres"):
        for k in range(5):
            st = states[k] if cfg == "2d" else ("running" if k == 0 else "queued")
            done = {"running": 3 + k, "completed": 8, "backoff": 2}.get(st, 0)
            runs.append(RunView(
                key=f"{cfg}/{k}", kind="fold", label=f"{cfg}/{k}", state=st,
                configuration=cfg, fold=k,
                device=((f"cpu{k % 2}" if cpu_mode else f"gpu{k % 2}") if st == "running"
                        else None),
                pid=(4000 + k if st == "running" else None),
                epoch=done, epochs=8, iteration=5 if st == "running" else None,
                iterations_per_epoch=12,
                samples_per_s=(41.5 - k if st == "running" else None),
                train_loss=(0.9 - 0.08 * done if done else None),
                val_dice=(0.5 + 0.05 * done if done else None),
                ema_dice=(0.48 + 0.05 * done if done else None),
                best_dice=(0.52 + 0.05 * done if done else None),
                eta_s=(95.0 * (8 - done) if st == "running" else None),
                restarts=1 if st == "backoff" else 0,
                last_event_age_s=(2.0 if st == "running" else None),
                message=("exit -9 (killed); restart in 4s" if st == "backoff" else None),
                epoch_s=(95.0 if done else None), data_wait_frac=(0.08 if done else None),
                peak_mem_mb=(10_240.0 if done else None),
                val_dice_per_class=([0.9, 0.1 + 0.05 * done] if done else None),
                run_dir=f"/exp/{cfg}/fold_{k}"))
    for i, cfg in enumerate(("2d", "3d_fullres")):
        runs.insert(i, RunView(key=f"preprocess-{cfg}", kind="stage", label=f"preprocess {cfg}",
                               state="completed", configuration=cfg, progress=(20, 20)))
    for cfg in ("2d", "3d_fullres"):
        runs.append(RunView(key=f"crossval-{cfg}", kind="stage", label=f"crossval {cfg}",
                            state="queued", configuration=cfg,
                            depends_on=tuple(f"{cfg}/{k}" for k in range(5))))
    runs.append(RunView(key="find-best", kind="stage", label="find best", state="queued",
                        depends_on=("crossval-2d", "crossval-3d_fullres")))
    runs.append(RunView(key="predict", kind="stage", label="predict test", state="queued",
                        depends_on=("find-best",)))
    return runs


def feed_more(runs: list[RunView]) -> None:
    """Values that arrive after the first frame: longer than anything before them."""
    by = {r.key: r for r in runs}
    r = by["2d/0"]
    r.epoch, r.epochs, r.val_dice, r.ema_dice, r.best_dice = 123, 1000, 0.7391, 0.7216, 0.7389
    r.train_loss, r.samples_per_s, r.eta_s, r.device = -0.61234, 113.27, 4 * 3600 + 12 * 60, "gpu13"
    r.epoch_s, r.last_event_age_s = 31.4, 12.0
    by["2d/1"].state, by["2d/1"].device = "completed", None
    by["2d/4"].message = "blocked: 3d_fullres/4 did not complete; resume it with r"
    by["3d_fullres/0"].restarts = 12


def results_view():
    from console.protocol.model import ResultsView, ScoreView
    cls = {"organ": 0.967, "lesion": 0.911}
    return ResultsView(
        root="/exp/results/demo",
        configurations=[ScoreView("2d", 0.939, cls, 24, "/exp/results/demo/2d/crossval/summary.json"),
                        ScoreView("3d_fullres", 0.917, {"organ": 0.946, "lesion": 0.887}, 24,
                                  "/exp/results/demo/3d_fullres/crossval/summary.json")],
        ensembles=[ScoreView("2d+3d_fullres", 0.949, {"organ": 0.968, "lesion": 0.930}, 24,
                             "/exp/results/demo/ensembles/2d+3d_fullres/summary.json")],
        chosen=["2d", "3d_fullres"], chosen_dice=0.949,
        best_path="/exp/results/demo/best_configuration.json",
        postprocessing="largest component of all foreground", postprocessing_dice=(0.949, 0.951),
        postprocessing_path="/exp/results/demo/postprocessing.json", predicted_cases=6,
        predictions_dir="/exp/results/demo/predictions",
        test=ScoreView("test set", 0.966, {"organ": 0.978, "lesion": 0.955}, 6,
                       "/exp/results/demo/predictions/summary.json"))


def brain_results_view():
    """An MRI brain dataset's results: class names longer than the old 10-character columns."""
    from console.protocol.model import ResultsView, ScoreView

    def cls(g, w, c):
        return {"grey_matter": g, "white_matter": w, "cerebrospinal_fluid": c}
    root = "/exp/results/brain"
    return ResultsView(
        root=root,
        configurations=[ScoreView("2d", 0.801, cls(0.812, 0.853, 0.738), 20,
                                  f"{root}/2d/crossval/summary.json"),
                        ScoreView("3d_fullres", 0.823, cls(0.834, 0.871, 0.764), 20,
                                  f"{root}/3d_fullres/crossval/summary.json")],
        ensembles=[ScoreView("2d+3d_fullres", 0.829, cls(0.839, 0.876, 0.772), 20,
                             f"{root}/ensembles/2d+3d_fullres/summary.json")],
        chosen=["2d", "3d_fullres"], chosen_dice=0.829, best_path=f"{root}/best_configuration.json",
        postprocessing="none: it would not raise the Dice", postprocessing_dice=(0.829, 0.829),
        postprocessing_path=f"{root}/postprocessing.json", predicted_cases=4,
        predictions_dir=f"{root}/predictions",
        test=ScoreView("test set", 0.790, cls(0.801, 0.842, 0.727), 4,
                       f"{root}/predictions/summary.json"))


def finish(runs: list[RunView]) -> None:
    """Everything completed, stages with their outcomes (as console.engine.results words them)."""
    from console.engine.results import apply_stage_result
    from console.kinds.results import LayoutResults
    rv = results_view()
    words = LayoutResults(Layout(Path(rv.root)), ["2d", "3d_fullres"])
    for r in runs:
        r.state, r.device, r.pid, r.message, r.eta_s = "completed", None, None, None, None
        if r.epochs:
            r.epoch = r.epochs
        if r.kind == "stage":
            apply_stage_result(r, words.stage_result(r.key, rv))


def demo_gpus() -> list[GpuView]:
    return [
        GpuView(0, "NVIDIA A100-SXM4-80GB", "GPU-0", 87.0, 30_500.0, 81_920.0, 64.0, 310.0, 400.0,
                processes=[GpuProcessView(4000, 10_200.0, "2d/0"),
                           GpuProcessView(4002, 10_100.0, "2d/2"),
                           GpuProcessView(991, 9_800.0, None, "bob", "python other.py")],
                util_history=[10, 30, 50, 70, 90, 85, 87, 88], mem_history=[1e4, 2e4, 3e4, 3e4]),
        GpuView(1, "NVIDIA A100-SXM4-80GB", "GPU-1", 45.0, 12_000.0, 81_920.0, 51.0, 180.0, 400.0,
                processes=[GpuProcessView(4001, 11_000.0, "2d/1")],
                util_history=[0, 5, 20, 45, 40, 45], mem_history=[0, 6e3, 12e3]),
        GpuView(2, None, "GPU-2", None, None, None, None, None, None, lost=True),
    ]


class ScriptedEngine:
    """Deterministic snapshots; actions change the runs like the engine would, and are logged."""

    def __init__(self, *, read_only=False, cpu_mode=False, poll_delay=0.0, fail_polls=0,
                 finished=False, supervised=True):
        self.read_only = read_only
        self.cpu_mode = cpu_mode
        self.poll_delay = poll_delay
        self.fail_polls = fail_polls
        self.runs = demo_runs(cpu_mode)
        self.gpus = [] if cpu_mode else demo_gpus()
        self.finished = finished
        self.results = results_view() if finished else None
        self.supervisor = SupervisorView(
            "alive", pid=4242, host="node7", started=T0 - 3600, heartbeat=T0,
            text="supervised by pid 4242 on node7") if supervised else SupervisorView(
            "down", pid=4242, host="node7", since=T0 - 600, reason="signal SIGKILL",
            text="not supervised since 14:03: runs are not watched, queued runs will not "
                 "start; `foldwatch up` resumes")
        if finished:
            finish(self.runs)
        self.watchdog = True
        self.calls: list[tuple] = []
        self.polls = 0
        self.in_poll = threading.Event()
        self.decisions = [Decision(T0 - 300, "2d/0", "launch", "gpu0 (util 3%, 79.1G free)"),
                          Decision(T0 - 120, "2d/2", "restart", "exit -9 (killed); resume "
                                                                "after 4s backoff"),
                          Decision(T0 - 60, "2d/0", "checkpoint", "epoch 3 saved")]

    def _run(self, key):
        return next(r for r in self.runs if r.key == key)

    def poll(self) -> Snapshot:
        self.in_poll.set()
        try:
            if self.poll_delay:
                time.sleep(self.poll_delay)
            self.polls += 1
            if self.fail_polls > 0:
                self.fail_polls -= 1
                raise OSError("state.json: disk full (scripted)")
            return Snapshot(time=T0, runs=[RunView(**vars(r)) for r in self.runs],
                            gpus=list(self.gpus), cpu_mode=self.cpu_mode, cpu_slots=3 if self.cpu_mode else 2,
                            nvml_message="no NVIDIA driver" if self.cpu_mode else None,
                            watchdog_enabled=self.watchdog, read_only=self.read_only,
                            finished=self.finished, succeeded=self.finished,
                            decisions=list(self.decisions), results=self.results,
                            supervisor=self.supervisor, class_names=["organ", "lesion"])
        finally:
            self.in_poll.clear()

    def epoch_history(self, key):
        r = self._run(key)
        return [EpochPoint(e, 1.0 - 0.1 * e, 1.05 - 0.09 * e, 0.4 + 0.06 * e,
                           0.38 + 0.055 * e, 0.01 * (1 - e / 8) ** 0.9,
                           [0.9, 0.1 + 0.05 * e], 95.0, 0.08, 10_240.0, 41.5)
                for e in range(min(r.epoch or 0, 8))]    # 0-based, like the engine

    def stderr_tail(self, key, lines=40):
        return [f"[{key}] epoch {e}: loss ok" for e in range(1, 4)][-lines:]

    def checkpoints(self, key):
        return [(f"/exp/{key}/checkpoints/latest.pt", T0 - 30),
                (f"/exp/{key}/checkpoints/best.pt", T0 - 95)]

    def _check(self):
        if self.read_only:
            raise PermissionError("read-only")

    def launch(self, configurations, folds, gpus=None):
        self._check()
        self.calls.append(("launch", list(configurations), list(folds), gpus))

    def stop(self, key):
        self._check()
        self.calls.append(("stop", key))
        r = self._run(key)
        r.state, r.device, r.pid = "stopped", None, None

    def kill(self, key):
        self._check()
        self.calls.append(("kill", key))

    def resume(self, key):
        self._check()
        self.calls.append(("resume", key))

    def restart_from_scratch(self, key):
        self._check()
        self.calls.append(("scratch", key))

    def set_watchdog(self, enabled):
        self._check()
        self.calls.append(("watchdog", enabled))
        self.watchdog = enabled

    def select_gpus(self, gpus):
        self.calls.append(("select_gpus", gpus))

    def run_stage_now(self, stage):
        self._check()
        self.calls.append(("stage", stage))

    def stop_all(self, final=True):
        self.calls.append(("stop_all",))
        return "stopping every run"

    def close(self):
        self.calls.append(("close",))
