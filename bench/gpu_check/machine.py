"""The machine: the packages the check needs (installed from carried wheels when missing),
whether it has a GPU, what it runs (versions), and the `gpu`-marked tests on it."""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from .context import CONSOLE_NVML, ROOT, Ctx, console_module, smi, tail
from .report import Step

WHEELS = ROOT / ".whl"
DEFAULT_SITE = Path(tempfile.gettempdir()) / "foldwatch-gpu-site"
REQUIRED_MODULES = ("yaml", "pydantic", "rich", "psutil", "filelock", "pynvml", "numpy", "scipy",
                    "torch", "monai", "nibabel", "matplotlib", "PIL")


def ensure_packages(wheels: Path, site: Path) -> None:
    """Missing packages from the wheels in `wheels` (into `site`, outside the repo), then this
    command again with `site` on PYTHONPATH; the torch already here is kept."""
    missing = [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]
    wanted = missing + (["nnunetv2"] if importlib.util.find_spec("nnunetv2") is None else [])
    found = sorted(Path(wheels).glob("*.whl"))
    if os.environ.get("FOLDWATCH_GPU_CHECK_SITE") or not found or not wanted:
        if missing:
            raise SystemExit(f"gpu_check: missing Python packages {', '.join(missing)}: run "
                             "`make venv` (or carry wheels made by `make gpu-wheels` in .whl/)")
        return
    stamp = site / ".foldwatch-wheels"
    names = "\n".join(w.name for w in found)
    t = time.monotonic()
    if not stamp.exists() or stamp.read_text() != names:
        print(f"installing {len(found)} wheels from {wheels} into {site} (missing: "
              f"{', '.join(wanted)}) ...", flush=True)
        shutil.rmtree(site, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site),
                        *map(str, found)], check=True)
        stamp.write_text(names)
    env = dict(os.environ, FOLDWATCH_GPU_CHECK_SITE=str(site),
               FOLDWATCH_GPU_CHECK_INSTALL_S=f"{time.monotonic() - t:.1f}",
               FOLDWATCH_GPU_CHECK_T0=str(time.time() - (time.monotonic() - t)))
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)] + [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PATH"] = str(site / "bin") + os.pathsep + os.environ.get("PATH", "")
    os.chdir(ROOT)
    os.execve(sys.executable, [sys.executable, "-m", __package__, *sys.argv[1:]], env)


def detect_gpu(index: int) -> tuple[bool, str | None, str | None]:
    """(GPU present, its name, NVML's message) from the console's own sampler."""
    try:
        sampler = console_module(CONSOLE_NVML).NvmlSampler()
        r = sampler.sample_now()
        sampler.close()
    except Exception as e:
        return False, None, f"{type(e).__name__}: {e}"
    if r.available is True and r.gpus:
        if index >= len(r.gpus):
            raise SystemExit(f"gpu_check: --gpu {index}: this machine has {len(r.gpus)} GPU(s)")
        return True, r.gpus[index].name, None
    return False, None, r.message


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def step_versions(ctx: Ctx) -> None:
    s = Step("versions", ctx.folder)
    import psutil
    import torch
    s.fact("python", platform.python_version(), "platform.python_version()")
    s.fact("machine", f"{platform.system()} {platform.release()} {platform.machine()}",
           "platform")
    s.figure("CPU cores usable", len(os.sched_getaffinity(0)), "cores", "os.sched_getaffinity(0)")
    s.figure("CPU cores (logical)", os.cpu_count(), "cores", "os.cpu_count()")
    s.figure("memory", round(psutil.virtual_memory().total / 2**30, 1), "GiB",
             "psutil.virtual_memory().total")
    s.fact("torch", torch.__version__, "torch.__version__")
    s.fact("torch CUDA", torch.version.cuda or "none (CPU build)", "torch.version.cuda")
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    s.fact("cuDNN", cudnn or "none", "torch.backends.cudnn.version()")
    for mod in ("numpy", "monai", "nibabel", "nnunetv2", "pynvml"):
        name = {"pynvml": "nvidia-ml-py"}.get(mod, mod)
        try:
            s.fact(mod, version(name), f"importlib.metadata.version({name!r})")
        except Exception:
            s.fact(mod, "not installed", "importlib.metadata")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True)
    s.fact("foldwatch commit", commit.stdout.strip() if commit.returncode == 0 else
           "n/a (no .git in this copy)", "git rev-parse --short HEAD")
    if not ctx.gpu:
        s.fact("torch.cuda.is_available()", torch.cuda.is_available(), "torch")
        s.note(f"GPU, driver and CUDA facts left out: {ctx.skip_why}.")
        s.finish()
        return
    s.check("torch sees a CUDA device", torch.cuda.is_available(), "torch.cuda.is_available()")
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(ctx.index)
        s.fact("GPU (torch)", p.name, f"torch.cuda.get_device_properties({ctx.index})")
        s.fact("compute capability", f"{p.major}.{p.minor}", "torch.cuda.get_device_properties")
        s.figure("GPU memory (torch)", round(p.total_memory / 2**20), "MiB",
                 "torch.cuda.get_device_properties().total_memory")
        s.figure("multiprocessors", p.multi_processor_count, "SMs",
                 "torch.cuda.get_device_properties().multi_processor_count")
    _nvml_versions(s, ctx.index)
    rows = smi("--query-gpu=index,name,memory.total,driver_version,pci.bus_id")
    if rows:
        s.fact("nvidia-smi", "; ".join(", ".join(r) for r in rows),
               "nvidia-smi --query-gpu=index,name,memory.total,driver_version,pci.bus_id")
    s.finish()


def _nvml_versions(s: Step, index: int) -> None:
    import pynvml
    pynvml.nvmlInit()
    try:
        s.fact("driver", _text(pynvml.nvmlSystemGetDriverVersion()),
               "NVML nvmlSystemGetDriverVersion")
        cu = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        s.fact("driver's CUDA", f"{cu // 1000}.{cu % 1000 // 10}",
               "NVML nvmlSystemGetCudaDriverVersion_v2")
        s.figure("GPUs", pynvml.nvmlDeviceGetCount(), "devices", "NVML nvmlDeviceGetCount")
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        s.fact("GPU", _text(pynvml.nvmlDeviceGetName(h)), f"NVML nvmlDeviceGetName({index})")
        s.figure("GPU memory", round(pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**20), "MiB",
                 "NVML nvmlDeviceGetMemoryInfo().total")
    finally:
        pynvml.nvmlShutdown()


def step_gpu_tests(ctx: Ctx) -> None:
    s = Step("gpu_tests", ctx.folder)
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                   if "mark.gpu" in p.read_text(errors="replace"))
    s.fact("files", ", ".join(files), "tests/test_*.py containing pytest.mark.gpu")
    if not ctx.gpu:       # `make test` itself collects these and skips them: nothing to add
        s.finish("skipped", f"{ctx.skip_why}; these tests skip themselves without one")
        return
    if importlib.util.find_spec("pytest") is None:
        s.finish("skipped", "pytest is not installed here")
        return
    log = ctx.folder / "gpu_tests.log"
    r = ctx.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                 "-o", "addopts=-ra", *files], timeout=ctx.left() - 5, log=log, check=False)
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors|"
                                                r"deselected)", tail(r.stdout, 3))}
    for k in ("passed", "failed", "skipped", "deselected"):
        s.figure(f"tests {k}", counts.get(k, 0), "tests",
                 f"pytest -q -m gpu {' '.join(files)}: summary line")
    s.fact("summary", tail(r.stdout, 1), "pytest's last line")
    s.check("pytest -m gpu exit 0 with tests passed",
            r.returncode == 0 and counts.get("passed", 0) > 0 and not counts.get("failed"),
            f"exit {r.returncode}: {tail(r.stdout, 8)}" if r.returncode else "")
    s.finish()
