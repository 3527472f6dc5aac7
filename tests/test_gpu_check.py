"""The GPU check's dry run (`python -m bench.gpu_check`, bench/gpu_check/): every step of the
GPU acceptance run proven on the CPU, each with a status, the skipped ones with a reason,
every figure with its unit and method, and nothing left running after it.

`make test` runs every group but nnunet: that one is nnU-Net's own start-up several times
over (planning, preprocessing and training, each importing nnunetv2 and torch, and its
spawned workers), about as much CPU as all the other steps together, and `make test`
already runs nnU-Net 2.8.1 through `trainer: nnunetv2` (tests/test_nnunet_kind.py). The
nnunet step's dry run is the `slow` test below (`make test-all`); `make gpu-check` on a CPU
runs every group."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from conftest import _has_nvidia_gpu

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["versions", "gpu_tests", "dataset", "nvml", "placement", "kill_resume", "trainer",
         "nnunet", "demo"]
MAKE_TEST_GROUPS = "versions,gpu_tests,dataset,two_runs,trainer,demo"


def dry_run(tmp_path: Path, steps: str) -> tuple[dict, dict[str, dict], str]:
    """(report, its steps by name, the Markdown) of `python -m bench.gpu_check` on the CPU."""
    gpu = _has_nvidia_gpu()
    out, work = tmp_path / "out", tmp_path / "work"
    # Where there is a GPU, ask for the dry run: the real one takes 8 minutes.
    r = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--work", str(work), "--out",
                        str(out), "--steps", steps] + (["--dry-run"] if gpu else []),
                       cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    report = json.loads((out / "gpu-check.json").read_text())
    assert report["mode"] == "dry-run"
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == STEPS
    for s in steps.values():
        assert s["status"] in ("ok", "skipped"), (s["name"], s["why"])
        assert s["status"] == "ok" or s["why"], s["name"]
        for f in s["figures"]:
            assert f["unit"] and f["method"] and f["value"] is not None, (s["name"], f)
        assert all(c["pass"] for c in s["checks"]), (s["name"], s["checks"])
        # foldwatch down + stop ended every supervisor and run: the runner killed nothing
        assert not any("leftover" in n for n in s["notes"]), (s["name"], s["notes"])
    left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
            if str(work) in " ".join(p.info["cmdline"] or [])]
    assert not left, left
    md = (out / "gpu-check.md").read_text()
    for name in STEPS:
        assert f"## {name}: " in md
    return report, steps, md


def test_dry_run_proves_every_step_and_says_what_it_skipped(tmp_path):
    _, steps, md = dry_run(tmp_path, MAKE_TEST_GROUPS)
    why = "dry run asked for" if _has_nvidia_gpu() else "no NVIDIA GPU (NVML: "
    for name in ("gpu_tests", "nvml", "placement"):        # they need a GPU
        assert steps[name]["status"] == "skipped" and why in steps[name]["why"], steps[name]
    for name in ("versions", "dataset", "kill_resume", "trainer", "demo"):   # meaningful on a CPU
        assert steps[name]["status"] == "ok" and steps[name]["figures"], steps[name]
    assert steps["nnunet"]["status"] == "skipped"
    assert steps["nnunet"]["why"] == "not selected (--steps)"
    kill = {f["name"]: f["value"] for f in steps["kill_resume"]["figures"]}
    assert kill["epochs lost"] == 0 and kill["resumed from"] >= 1
    checks = {c["name"] for c in steps["kill_resume"]["checks"]}
    assert "the supervisor's watchdog restarted it (pid changed, restarts counted)" in checks
    trainer = {f["name"]: f for f in steps["trainer"]["figures"]}
    assert trainer["3d_fullres: pipeline"]["unit"] == "samples/s"
    assert trainer["3d_fullres: pipeline"]["value"] > 0
    demo = {f["name"]: f for f in steps["demo"]["figures"]}
    assert demo["wall time"]["unit"] == "s"
    test_set = demo["test set, 6 cases (ensemble + largest-component postprocessing)"]
    assert test_set["unit"] == "Dice" and 0 <= test_set["value"] <= 1
    assert "| demo | ok |" in md


@pytest.mark.slow
def test_dry_run_of_the_nnunet_step(tmp_path):
    if importlib.util.find_spec("nnunetv2") is None:
        pytest.skip("nnunetv2 is not installed (pip install 'foldwatch[nnunet]')")
    _, steps, _ = dry_run(tmp_path, "nnunet")
    s = steps["nnunet"]
    assert s["status"] == "ok", s
    figures = {f["name"]: f for f in s["figures"]}
    for side in ("nnU-Net", "foldwatch"):
        assert figures[f"{side}: iterations/s"]["value"] > 0
        assert figures[f"{side}: iterations/s"]["unit"] == "iterations/s"
    assert figures["foldwatch / nnU-Net iterations/s"]["unit"] == "ratio"
