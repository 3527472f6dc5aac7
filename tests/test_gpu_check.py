"""bench/gpu_check.py's dry run: every step of the GPU acceptance run proven on the CPU, each
with a status, the skipped ones with a reason, every figure with its unit and method."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from conftest import _has_nvidia_gpu

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["versions", "gpu_tests", "dataset", "nvml", "placement", "kill_resume", "trainer",
         "nnunet", "demo"]


def test_dry_run_proves_every_step_and_says_what_it_skipped(tmp_path):
    gpu = _has_nvidia_gpu()
    out = tmp_path / "out"
    # Where there is a GPU, ask for the dry run: the real one takes 8 minutes.
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--work",
                        str(tmp_path / "work"), "--out", str(out)] + (["--dry-run"] if gpu else []),
                       capture_output=True, text=True, timeout=580)
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
    why = "dry run asked for" if gpu else "no NVIDIA GPU (NVML: "
    for name in ("gpu_tests", "nvml", "placement"):        # they need a GPU
        assert steps[name]["status"] == "skipped" and why in steps[name]["why"], steps[name]
    for name in ("versions", "dataset", "kill_resume", "trainer", "demo"):   # meaningful on a CPU
        assert steps[name]["status"] == "ok" and steps[name]["figures"], steps[name]
    lost = {f["name"]: f["value"] for f in steps["kill_resume"]["figures"]}["epochs lost"]
    assert lost == 0
    if importlib.util.find_spec("nnunetv2") is not None:
        assert steps["nnunet"]["status"] == "ok", steps["nnunet"]
    md = (out / "gpu-check.md").read_text()
    for name in STEPS:
        assert f"## {name}: " in md
