"""The steps of the GPU check and the groups they run in: one child process per group, with
its own time limit, in this order."""

from __future__ import annotations

from dataclasses import dataclass

TITLES = {
    "versions": "Versions: torch, CUDA, driver, GPU, cores",
    "gpu_tests": "The gpu-marked tests",
    "dataset": "The demo dataset (used by the steps below)",
    "nvml": "NVML from the console's sampler while two runs train",
    "placement": "Placement: CUDA_VISIBLE_DEVICES, runs_per_gpu: 2 on one GPU",
    "kill_resume": "A run killed mid-epoch, resumed",
    "trainer": "Trainer: pipeline vs bare loop, data wait, peak memory vs plan and probe-memory",
    "nnunet": "Side by side with nnU-Net v2 (trainer: nnunetv2)",
    "demo": "foldwatch demo --headless",
}


@dataclass(frozen=True)
class Group:
    """Steps measured by one child process (`entry`, "module:function", called with a Ctx)."""
    name: str
    steps: tuple[str, ...]
    cap_gpu: float           # its time limit on a GPU, s
    cap_dry: float           # ... in the dry run, s
    least: float             # not started with less time than this left, s
    folder: str              # its folder under the work folder (leftovers are looked for there)
    entry: str
    needs_data: bool = True  # starts after the dataset group

    def cap(self, gpu: bool) -> float:
        return self.cap_gpu if gpu else self.cap_dry


# The dry run's limits only stop a stuck step: they allow for a CPU shared with other work
# (3-4 times the idle time); its figures are not timings.
GROUPS = [
    Group("versions", ("versions",), 40, 60, 5, "steps", "machine:step_versions", False),
    Group("gpu_tests", ("gpu_tests",), 90, 90, 20, "steps", "machine:step_gpu_tests", False),
    Group("dataset", ("dataset",), 30, 60, 5, "data", "dataset:step_dataset", False),
    Group("two_runs", ("nvml", "placement", "kill_resume"), 150, 240, 60, "two-runs",
          "two_runs:step_two_runs"),
    Group("trainer", ("trainer",), 150, 240, 50, "trainer", "throughput:step_trainer"),
    Group("nnunet", ("nnunet",), 210, 400, 100, "nnunet", "nnunet_side:step_nnunet"),
    Group("demo", ("demo",), 240, 240, 90, "demo", "demo:step_demo"),
]
BY_NAME = {g.name: g for g in GROUPS}
STEPS = [s for g in GROUPS for s in g.steps]
