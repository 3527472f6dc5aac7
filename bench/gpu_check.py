"""The GPU acceptance run (issue #21): one prepared command, figures a reader can trust.

On a machine with an NVIDIA GPU it measures, in this order, each step with its own time
limit inside one overall budget (8 minutes by default), and rewrites `gpu-check.json` and
`gpu-check.md` after every step, so a run killed half-way still leaves its figures:

1. versions      torch, CUDA, cuDNN, driver, GPU model and memory, cores
2. gpu_tests     the `gpu`-marked tests (pytest -m gpu)
3. dataset       the demo CT dataset, generated (shared by the steps below)
4. nvml / placement / kill_resume   one training session: two folds of one experiment on
                 the chosen GPU (`runs_per_gpu: 2`) beside a foreign CUDA process; the
                 console's sampler (`foldwatch status --json`) against `nvidia-smi`,
                 attribution by pid and by the container fallback, each run's
                 CUDA_VISIBLE_DEVICES, then one fold SIGKILLed mid-epoch and resumed
5. trainer       2d and 3d_fullres: samples/s of the real data pipeline against a bare loop
                 on one batch (bench/trainer_throughput.py, AMP on, `num_workers: auto`),
                 data-wait fraction, the allocator's peak against the plan's estimate and
                 `probe-memory`'s prediction
6. nnunet        nnU-Net v2 (`trainer: nnunetv2`) and foldwatch's trainer on the same
                 dataset, patch and batch: iterations/s, samples/s, the Dice each reaches
                 in the same wall time and at the same number of iterations
7. demo          `foldwatch demo --headless` on the GPU: wall time and Dice beside the
                 README's CPU figures

Every figure has a unit and says how it was measured; every ratio is of two figures
measured in the same run. Without a GPU (or with --dry-run) the same steps run on the CPU
with tiny sizes to prove they work, and the steps that need a GPU say why they were
skipped (tests/test_gpu_check.py runs this dry run in `make test`).

    python bench/gpu_check.py [--out DIR] [--steps nvml,trainer] [--dry-run] [--budget-s 480]
    make gpu-check [GPU_CHECK_ARGS="--out DIR"]

Packages: what is missing (monai, nibabel, pydantic, nnunetv2 ...) is installed from the
wheels in `.whl/` (made by `make gpu-wheels`) into a folder outside the repo, and the
script starts itself again with it on PYTHONPATH; the torch already installed is used.

The prepared device call (docs/training.md, "GPU acceptance run"): here, `make gpu-wheels`
once (46.5 MiB of wheels in .whl/, listed and summed by bench/gpu_wheels.sh), then `run`
with carry [".whl"], timeout_s 540 and the command

    set -o pipefail; PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --out $OUT 2>&1 | tee $OUT/gpu-check.log

A step that the budget left out is run by a second call with `--steps NAME`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".whl"
DEFAULT_SITE = Path(tempfile.gettempdir()) / "foldwatch-gpu-site"

# ---------------------------------------------------------------------------------------------
# Console imports: the ONLY place this script uses console internals. console/ is being split
# into sub-packages (console.nvml -> console.gpu.nvml, ...): when a module moves, change its
# name here. Everything else drives foldwatch through its CLI and the files under results/.
CONSOLE_CLI = "console.clients.cli"              # the `foldwatch` command, run as `python -m`
CONSOLE_NVML = "console.gpu.nvml"           # NvmlSampler: the console's own GPU sampler
CONSOLE_GPU_OWNERS = "console.gpu.owners"   # attribute(), OurRun: pid match + container fallback


def console_sampler():
    return importlib.import_module(CONSOLE_NVML).NvmlSampler


def console_attribution():
    mod = importlib.import_module(CONSOLE_GPU_OWNERS)
    return mod.attribute, mod.OurRun
# ---------------------------------------------------------------------------------------------

# (group, steps it reports, GPU cap s, dry-run cap s, least time worth starting it with, s)
GROUPS = [
    ("versions", ["versions"], 40, 40, 5),
    ("gpu_tests", ["gpu_tests"], 90, 90, 20),
    ("dataset", ["dataset"], 30, 30, 5),
    ("two_runs", ["nvml", "placement", "kill_resume"], 150, 150, 60),
    ("trainer", ["trainer"], 150, 120, 50),
    ("nnunet", ["nnunet"], 210, 200, 100),
    ("demo", ["demo"], 240, 120, 90),
]
SERIAL = {"versions", "gpu_tests", "dataset"}     # run alone, before the others
GROUP_DIRS = {"versions": "steps", "gpu_tests": "steps", "dataset": "data", "two_runs": "two-runs",
              "trainer": "trainer", "nnunet": "nnunet", "demo": "demo"}   # under the work folder
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
REQUIRED_MODULES = ("yaml", "pydantic", "rich", "psutil", "filelock", "pynvml", "numpy", "scipy",
                    "torch", "monai", "nibabel", "matplotlib", "PIL")
DEMO_ROWS = {   # the README's demo table: row label -> what this script reads from status --json
    "2d, 5-fold cross-validation": "2d",
    "3d_fullres, 5-fold cross-validation": "3d_fullres",
    "ensemble 2d + 3d_fullres (chosen by find-best)": "chosen",
    "test set, 6 cases (ensemble + largest-component postprocessing)": "test",
}


# -- results ----------------------------------------------------------------------------------
def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Step:
    """One step's result, saved after every change (a killed step keeps what it measured)."""

    def __init__(self, name: str, folder: Path) -> None:
        self.path = folder / f"{name}.json"
        self.d = {"name": name, "title": TITLES[name], "status": "running", "why": None,
                  "wall_s": None, "figures": [], "checks": [], "facts": [], "notes": []}
        self.t0 = time.monotonic()
        self.save()

    def save(self) -> None:
        self.d["wall_s"] = round(time.monotonic() - self.t0, 1)
        _atomic_write(self.path, json.dumps(self.d, indent=1, default=str))

    def figure(self, name: str, value, unit: str, method: str) -> None:
        if isinstance(value, float):
            value = float(f"{value:.4g}")
        self.d["figures"].append({"name": name, "value": value, "unit": unit, "method": method})
        self.save()

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.d["checks"].append({"name": name, "pass": bool(ok), "detail": detail})
        self.save()
        return bool(ok)

    def fact(self, name: str, value, source: str) -> None:
        self.d["facts"].append({"name": name, "value": value, "source": source})
        self.save()

    def note(self, text: str) -> None:
        self.d["notes"].append(text)
        self.save()

    def finish(self, status: str = "ok", why: str | None = None) -> None:
        failed = [c["name"] for c in self.d["checks"] if not c["pass"]]
        if status == "ok" and failed:
            status, why = "failed", "check failed: " + "; ".join(failed)
        self.d["status"], self.d["why"] = status, why
        self.save()


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict) -> str:
    """The short report: a table of the steps, then each step's figures, checks and notes."""
    L = [f"# foldwatch GPU check ({report['mode']})", ""]
    m = report["machine"]
    L.append(f"{report['started']}, {m.get('gpu') or 'no GPU'}, {m.get('cores')} cores; "
             f"budget {report['budget_s']} s, took {report.get('elapsed_s', '?')} s.")
    if report.get("mode_reason"):
        L.append(f"Mode: {report['mode_reason']}.")
    if report.get("install_s") is not None:
        L.append(f"Missing packages installed from the carried wheels in {report['install_s']} s.")
    L += ["", "| step | status | s | why |", "|---|---|---:|---|"]
    for s in report["steps"]:
        L.append(f"| {s['name']} | {s['status']} | {s.get('wall_s') or ''} | {_cell(s.get('why') or '')} |")
    for s in report["steps"]:
        L += ["", f"## {s['name']}: {s['title']}", "", f"**{s['status']}**"
              + (f": {s['why']}" if s.get("why") else "")]
        if s.get("facts"):
            L += [""] + [f"- {f['name']}: {f['value']} ({f['source']})" for f in s["facts"]]
        if s.get("figures"):
            L += ["", "| figure | value | unit | how measured |", "|---|---:|---|---|"]
            L += ["| " + " | ".join(_cell(f[k]) for k in ("name", "value", "unit", "method")) + " |"
                  for f in s["figures"]]
        if s.get("checks"):
            L += [""] + [f"- [{'x' if c['pass'] else ' '}] {c['name']}"
                         + (f": {c['detail']}" if c.get("detail") else "") for c in s["checks"]]
        if s.get("notes"):
            L += [""] + [f"> {n}" for n in s["notes"]]
    return "\n".join(L) + "\n"


# -- processes ----------------------------------------------------------------------------------
class Ctx:
    """What a step needs: where to work, the mode, its deadline, and the child environment."""

    def __init__(self, args, folder: Path, deadline: float) -> None:
        self.work = Path(args.work)
        self.folder = folder
        self.gpu = args.mode == "gpu"
        self.index = args.gpu
        self.skip_why = args.skip_why
        self.deadline = deadline
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        if args.forced_dry:            # a GPU machine asked for the dry run: keep off the GPU
            self.env.update(CUDA_VISIBLE_DEVICES="", FOLDWATCH_NO_NVML="1")
        self.data = self.work / "data" / "Dataset900_Demo"
        self.t_group = time.monotonic()

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, argv: list[str], *, timeout: float | None = None, log: Path | None = None,
            env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """argv to the end, within the step's deadline; output to `log` (or captured)."""
        limit = max(1.0, min(timeout or 1e9, self.left()))
        t = time.monotonic()
        out = open(log, "ab") if log else subprocess.PIPE
        p = subprocess.Popen(argv, cwd=ROOT, env=env or self.env, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
        try:
            stdout, _ = p.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _killpg(p.pid)
            p.wait()
            raise StepError(f"{_short(argv)} did not finish within {limit:.0f} s")
        finally:
            if log:
                out.close()
        text = (stdout or b"").decode(errors="replace") if not log else log.read_text(errors="replace")
        print(f"{time.monotonic() - self.t_group:6.1f}s  {_short(argv)}: exit {p.returncode} "
              f"after {time.monotonic() - t:.1f} s", flush=True)
        if check and p.returncode != 0:
            raise StepError(f"{_short(argv)} exited {p.returncode}: {_tail(text)}")
        return subprocess.CompletedProcess(argv, p.returncode, text, "")

    def spawn(self, argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen(argv, cwd=ROOT, env=env or self.env, stdout=open(log, "ab"),
                                stderr=subprocess.STDOUT, start_new_session=True)


class StepError(Exception):
    """A step cannot go on; the message says why."""


def _short(argv: list[str]) -> str:
    text = " ".join(str(a) for a in argv)
    return text if len(text) < 120 else text[:117] + "..."


def _tail(text: str, n: int = 6) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])[-600:]


def _killpg(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def fw(*args: str) -> list[str]:
    """The `foldwatch` command (its module: works without `pip install -e .`)."""
    return [sys.executable, "-m", CONSOLE_CLI, *args]


def trainer(*args: str) -> list[str]:
    return [sys.executable, "-m", "trainer", *args]


def status_json(ctx: Ctx, exp: Path) -> dict:
    """`foldwatch status --json`; on a GPU, again while its sampler has not read the GPUs yet
    (NVML's first initialisation can take longer than the command waits for it)."""
    for _ in range(5):
        r = ctx.run(fw("status", str(exp), "--json"), timeout=30)
        st = json.loads(r.stdout[r.stdout.index("{"):])
        if not ctx.gpu or st.get("gpus"):
            return st
    return st


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


def smi(*query: str) -> list[list[str]] | None:
    """nvidia-smi --query-...: rows of fields, None when nvidia-smi is missing or fails."""
    try:
        r = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    return [[f.strip() for f in ln.split(",")] for ln in r.stdout.strip().splitlines() if ln.strip()]


def _num(text: str) -> float | None:
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


# -- 1. versions ------------------------------------------------------------------------------
def step_versions(ctx: Ctx) -> None:
    s = Step("versions", ctx.folder)
    import platform

    import psutil
    s.fact("python", platform.python_version(), "platform.python_version()")
    s.fact("machine", f"{platform.system()} {platform.release()} {platform.machine()}",
           "platform")
    s.figure("CPU cores usable", len(os.sched_getaffinity(0)), "cores", "os.sched_getaffinity(0)")
    s.figure("CPU cores (logical)", os.cpu_count(), "cores", "os.cpu_count()")
    s.figure("memory", round(psutil.virtual_memory().total / 2**30, 1), "GiB",
             "psutil.virtual_memory().total")
    import torch
    s.fact("torch", torch.__version__, "torch.__version__")
    s.fact("torch CUDA", torch.version.cuda or "none (CPU build)", "torch.version.cuda")
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    s.fact("cuDNN", cudnn or "none", "torch.backends.cudnn.version()")
    for mod in ("numpy", "monai", "nibabel", "nnunetv2", "pynvml"):
        try:
            from importlib.metadata import version
            name = {"pynvml": "nvidia-ml-py"}.get(mod, mod)
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
    s.check("torch sees a CUDA device", torch.cuda.is_available(),
            "torch.cuda.is_available()")
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(ctx.index)
        s.fact("GPU (torch)", p.name, f"torch.cuda.get_device_properties({ctx.index})")
        s.fact("compute capability", f"{p.major}.{p.minor}", "torch.cuda.get_device_properties")
        s.figure("GPU memory (torch)", round(p.total_memory / 2**20), "MiB",
                 "torch.cuda.get_device_properties().total_memory")
        s.figure("multiprocessors", p.multi_processor_count, "SMs",
                 "torch.cuda.get_device_properties().multi_processor_count")
    import pynvml
    pynvml.nvmlInit()
    try:
        drv = pynvml.nvmlSystemGetDriverVersion()
        s.fact("driver", drv.decode() if isinstance(drv, bytes) else drv,
               "NVML nvmlSystemGetDriverVersion")
        cu = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        s.fact("driver's CUDA", f"{cu // 1000}.{cu % 1000 // 10}",
               "NVML nvmlSystemGetCudaDriverVersion_v2")
        n = pynvml.nvmlDeviceGetCount()
        s.figure("GPUs", n, "devices", "NVML nvmlDeviceGetCount")
        h = pynvml.nvmlDeviceGetHandleByIndex(ctx.index)
        name = pynvml.nvmlDeviceGetName(h)
        s.fact("GPU", name.decode() if isinstance(name, bytes) else name,
               f"NVML nvmlDeviceGetName({ctx.index})")
        s.figure("GPU memory", round(pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**20), "MiB",
                 "NVML nvmlDeviceGetMemoryInfo().total")
    finally:
        pynvml.nvmlShutdown()
    rows = smi("--query-gpu=index,name,memory.total,driver_version,pci.bus_id")
    if rows:
        s.fact("nvidia-smi", "; ".join(", ".join(r) for r in rows),
               "nvidia-smi --query-gpu=index,name,memory.total,driver_version,pci.bus_id")
    s.finish()


# -- 2. the gpu-marked tests ----------------------------------------------------------------------
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
                                                r"deselected)", _tail(r.stdout, 3))}
    for k in ("passed", "failed", "skipped", "deselected"):
        s.figure(f"tests {k}", counts.get(k, 0), "tests",
                 f"pytest -q -m gpu {' '.join(files)}: summary line")
    s.fact("summary", _tail(r.stdout, 1), "pytest's last line")
    s.check("pytest -m gpu exit 0 with tests passed",
            r.returncode == 0 and counts.get("passed", 0) > 0 and not counts.get("failed"),
            f"exit {r.returncode}: {_tail(r.stdout, 8)}" if r.returncode else "")
    s.finish()


# -- 3. the dataset -------------------------------------------------------------------------------
def step_dataset(ctx: Ctx) -> None:
    s = Step("dataset", ctx.folder)
    t = time.monotonic()
    if not (ctx.data / "dataset.json").exists():
        ctx.run(trainer("make-demo-data", str(ctx.data), "--seed", "0"), timeout=60)
    cases = len(list((ctx.data / "labelsTr").glob("*.nii.gz")))
    s.figure("training cases", cases, "cases", "labelsTr/*.nii.gz of the generated demo dataset")
    s.figure("generation time", round(time.monotonic() - t, 1), "s",
             "wall time of python -m trainer make-demo-data --seed 0")
    s.finish()


# -- 4. two runs on one GPU: NVML, placement, a kill -----------------------------------------------
FOREIGN = ("import sys, time, torch\n"
           "x = torch.empty(64 * 2**20, dtype=torch.uint8, device='cuda')\n"
           "print('ready', flush=True)\n"
           "time.sleep(900)\n")


def _folds(st: dict) -> dict[str, dict]:
    return {r["key"]: r for r in st["runs"] if r["kind"] == "fold"}


def _gpu(st: dict, index: int) -> dict | None:
    return next((g for g in st.get("gpus") or [] if g["index"] == index), None)


def _events_since(run_dir: str | None, event: str, t: float = 0.0) -> list[dict]:
    if not run_dir:
        return []
    return [e for e in read_jsonl(Path(run_dir) / "metrics.jsonl")
            if e.get("event") == event and e.get("t", 0) >= t]


def two_runs_experiment(ctx: Ctx, folder: Path) -> tuple[Path, str]:
    if ctx.gpu:      # nnU-Net's default widths, the plan's patch and batch: a real fold's memory
        name, cfg = "3d_fullres", {"patch_size": "auto", "batch_size": "auto", "epochs": 100,
                                   "iterations_per_epoch": 50, "val_iterations": 2}
    else:
        name, cfg = "2d", {"patch_size": [32, 32], "batch_size": 2, "epochs": 100,
                           "iterations_per_epoch": 10, "val_iterations": 1, "base_features": 4,
                           "max_features": 8, "num_workers": 0}
    devices = {"gpus": [ctx.index], "runs_per_gpu": 2, "min_free_vram_gb": 1,
               "share_with_foreign": True, "cpu_slots": 2}
    if not ctx.gpu:
        devices["cpu_threads_per_run"] = 1
    exp = write_yaml(folder / "two-runs.yaml", {
        "experiment": "two-runs", "dataset": str(ctx.data), "results": str(folder / "results"),
        "folds": [0, 1], "configurations": {name: cfg}, "devices": devices,
        "watchdog": {"stall_timeout_s": 120, "max_restarts": 3, "backoff_initial_s": 1,
                     "backoff_max_s": 2, "grace_period_s": 10},
        "pipeline": {"evaluate": False, "find_best": False, "postprocess": False,
                     "predict_test": False},
        "previews": {"enabled": False}})
    return exp, name


def step_two_runs(ctx: Ctx) -> None:
    nv, pl, kr = (Step(n, ctx.folder) for n in ("nvml", "placement", "kill_resume"))
    folder = ctx.work / "two-runs"
    shutil.rmtree(folder, ignore_errors=True)
    exp, cfg = two_runs_experiment(ctx, folder)
    keys = [f"{cfg}/0", f"{cfg}/1"]
    idx = ctx.index
    foreign = up = None
    try:
        if ctx.gpu:
            env = dict(ctx.env, CUDA_VISIBLE_DEVICES=str(idx))
            foreign = ctx.spawn([sys.executable, "-c", FOREIGN, str(folder)], folder / "foreign.log",
                                env)
            until = time.monotonic() + 40
            while "ready" not in (folder / "foreign.log").read_text(errors="replace"):
                if foreign.poll() is not None or time.monotonic() > until:
                    raise StepError("the foreign CUDA process did not start: "
                                    + _tail((folder / "foreign.log").read_text(errors="replace")))
                time.sleep(0.2)
            nv.fact("foreign process", f"pid {foreign.pid}: python holding 64 MiB on GPU {idx}, "
                    "not started by foldwatch", "started by this script")
        t_up = time.monotonic()
        up = ctx.spawn(fw("up", str(exp), "--headless"), folder / "up.log")
        # A: both folds training, each with an epoch done (its peak memory is known)
        st, folds = {}, {}
        until = min(time.monotonic() + (90 if ctx.gpu else 60), ctx.deadline - 40)
        while True:
            if up.poll() is not None:
                raise StepError(f"foldwatch up exited {up.returncode}: "
                                + _tail((folder / "up.log").read_text(errors="replace")))
            st = status_json(ctx, exp)
            folds = _folds(st)
            ready = all(folds.get(k, {}).get("state") == "running" and folds[k].get("pid")
                        and (folds[k].get("epoch") or 0) >= 1 for k in keys)
            if ready and ctx.gpu:
                g = _gpu(st, idx)
                ready = g is not None and {folds[k]["pid"] for k in keys} <= {
                    p["pid"] for p in g["processes"]}
            if ready:
                break
            if time.monotonic() > until:
                raise StepError("the two folds were not both training after "
                                f"{time.monotonic() - t_up:.0f} s: "
                                + ", ".join(f"{k} {folds.get(k, {}).get('state')}" for k in keys))
            time.sleep(1.5)
        pl.figure("time to both folds training", round(time.monotonic() - t_up, 1), "s",
                  "from `foldwatch up --headless` to both folds running with an epoch done "
                  "(plan, preprocessing and the first epoch included)")
        pids = {k: folds[k]["pid"] for k in keys}
        _placement(ctx, pl, st, folds, keys)
        pl.finish("ok" if ctx.gpu else "skipped", None if ctx.gpu else
                  f"{ctx.skip_why}; on the CPU the two runs took cpu slots "
                  + ", ".join(str(folds[k].get('device')) for k in keys))
        if ctx.gpu:
            last = _nvml_samples(ctx, nv, exp, keys, pids, foreign.pid)
            _container_fallback(ctx, nv, last, folds, keys, pids, foreign.pid)
            nv.finish()
        else:
            nv.fact("console's GPU line", (st.get("nvml_message") or "-"),
                    "foldwatch status --json: nvml_message")
            nv.finish("skipped", ctx.skip_why)
        _kill_and_resume(ctx, kr, exp, keys[1], folds[keys[1]])
    except StepError as e:
        for s in (nv, pl, kr):
            if s.d["status"] == "running":
                s.finish("failed", str(e))
    finally:
        try:
            if up is not None:
                ctx.run(fw("stop", str(exp)), timeout=60, check=False)
                up.wait(timeout=20)
        except (StepError, subprocess.TimeoutExpired):
            pass            # the parent ends whatever is left (cleanup)
        finally:
            if up is not None:
                _killpg(up.pid)
            if foreign is not None:
                _killpg(foreign.pid)


def _placement(ctx: Ctx, pl: Step, st: dict, folds: dict, keys: list[str]) -> None:
    devices = {k: folds[k].get("device") for k in keys}
    pl.fact("devices", ", ".join(f"{k} on {d}" for k, d in devices.items()),
            "foldwatch status --json: runs[].device, one snapshot")
    for k in keys:
        env = proc_env(folds[k]["pid"]) or {}
        cvd = env.get("CUDA_VISIBLE_DEVICES", "(unset)")
        pl.fact(f"{k} CUDA_VISIBLE_DEVICES", cvd, f"/proc/{folds[k]['pid']}/environ")
        start = _events_since(folds[k].get("run_dir"), "start")
        if start:
            pl.fact(f"{k} trainer device", start[-1].get("device"), "metrics.jsonl start.device")
        if ctx.gpu:
            pl.check(f"{k}: CUDA_VISIBLE_DEVICES={ctx.index}, CUDA_DEVICE_ORDER=PCI_BUS_ID",
                     cvd == str(ctx.index) and env.get("CUDA_DEVICE_ORDER") == "PCI_BUS_ID",
                     f"CUDA_VISIBLE_DEVICES={cvd}, CUDA_DEVICE_ORDER={env.get('CUDA_DEVICE_ORDER')}")
    if ctx.gpu:
        pl.check(f"runs_per_gpu: 2: both folds on gpu{ctx.index} at once",
                 all(d == f"gpu{ctx.index}" for d in devices.values()),
                 ", ".join(f"{k}: {d}" for k, d in devices.items()))
        g = _gpu(st, ctx.index) or {"processes": []}
        on_gpu = {p["pid"] for p in g["processes"]}
        pl.check(f"NVML lists both trainers on GPU {ctx.index}",
                 {folds[k]["pid"] for k in keys} <= on_gpu, f"NVML pids {sorted(on_gpu)}")
    for k in keys:
        eps = _events_since(folds[k].get("run_dir"), "epoch")
        sps = [e["epoch_s"] for e in eps if e.get("epoch_s")]
        if sps and folds[k].get("samples_per_s"):
            pl.figure(f"{k} samples/s while sharing", folds[k]["samples_per_s"], "samples/s",
                      "foldwatch status --json: runs[].samples_per_s (batch x iterations / "
                      "epoch time, validation included), two folds on one device")
        waits = [e["data_wait_frac"] for e in eps if e.get("data_wait_frac") is not None]
        if waits:
            pl.figure(f"{k} data-wait fraction while sharing", round(statistics.median(waits), 3),
                      "fraction", "metrics.jsonl epoch.data_wait_frac, median over the epochs so far")


def _nvml_samples(ctx: Ctx, nv: Step, exp: Path, keys: list[str], pids: dict, foreign: int) -> dict:
    """Five readings of `foldwatch status --json`, each followed at once by nvidia-smi's."""
    idx = ctx.index
    rows, last = [], {}
    for i in range(5):
        st = status_json(ctx, exp)
        gpu_rows = smi("--query-gpu=index,utilization.gpu,memory.used,memory.total")
        apps = smi("--query-compute-apps=pid,used_memory,gpu_bus_id")
        g = _gpu(st, idx)
        if g is None:
            raise StepError(f"foldwatch status --json shows no GPU {idx}: {st.get('nvml_message')}")
        last = g
        procs = {p["pid"]: p for p in g["processes"]}
        srow = next((r for r in gpu_rows or [] if r[0] == str(idx)), None)
        smi_procs = {int(r[0]): _num(r[1]) for r in apps or [] if r and r[0].isdigit()}
        rows.append({
            "ours": all(procs.get(pids[k], {}).get("run_key") == k for k in keys),
            "foreign": foreign in procs and procs[foreign].get("run_key") is None,
            "util": g.get("util_pct"), "smi_util": _num(srow[1]) if srow else None,
            "mem": g.get("mem_used_mb"), "smi_mem": _num(srow[2]) if srow else None,
            "proc_diff": [abs(procs[p]["used_mb"] - smi_procs[p]) for p in procs
                          if p in smi_procs and procs[p].get("used_mb") is not None
                          and smi_procs[p] is not None],
            "run_mem": {k: procs.get(pids[k], {}).get("used_mb") for k in keys},
            "foreign_mem": procs.get(foreign, {}).get("used_mb")})
        time.sleep(1.5)
    n = len(rows)
    how = ("foldwatch status --json (the console's NvmlSampler through a read-only engine), "
           f"{n} readings 1.5 s apart")
    nv.figure("readings with both runs attributed by pid", sum(r["ours"] for r in rows),
              f"of {n} readings", how + ": gpus[].processes[].run_key == the run")
    nv.figure("readings with the foreign process shown as foreign", sum(r["foreign"] for r in rows),
              f"of {n} readings", how + ": run_key null for the foreign pid")
    nv.check("both runs attributed by pid in every reading", all(r["ours"] for r in rows))
    nv.check("the foreign process foreign in every reading", all(r["foreign"] for r in rows))
    for k in keys:
        mem = [r["run_mem"][k] for r in rows if r["run_mem"][k] is not None]
        if mem:
            nv.figure(f"{k} GPU memory", round(statistics.median(mem)), "MiB",
                      how + ": the process' usedGpuMemory, median (CUDA context included)")
    fm = [r["foreign_mem"] for r in rows if r["foreign_mem"] is not None]
    if fm:
        nv.figure("foreign process GPU memory", round(statistics.median(fm)), "MiB",
                  how + ": usedGpuMemory, median (64 MiB tensor + CUDA context)")
    pairs = [(r["util"], r["smi_util"]) for r in rows if None not in (r["util"], r["smi_util"])]
    if pairs:
        nv.figure("GPU utilisation, console", statistics.median(a for a, _ in pairs), "%",
                  how + ": gpus[].util_pct (NVML nvmlDeviceGetUtilizationRates), median")
        nv.figure("GPU utilisation, nvidia-smi", statistics.median(b for _, b in pairs), "%",
                  "nvidia-smi --query-gpu=utilization.gpu right after each reading, median")
        diff = max(abs(a - b) for a, b in pairs)
        nv.figure("utilisation difference, largest", diff, "percentage points",
                  "|console - nvidia-smi| over the paired readings (each averages its own "
                  "last sampling window)")
        nv.check("utilisation plausible: > 0 while training, within 30 points of nvidia-smi",
                 statistics.median(a for a, _ in pairs) > 0 and diff <= 30, f"largest gap {diff:.0f}")
    else:
        nv.check("utilisation read by the console and nvidia-smi", False, "n/a in every reading")
    pairs = [(r["mem"], r["smi_mem"]) for r in rows if None not in (r["mem"], r["smi_mem"])]
    if pairs:
        nv.figure("GPU memory used, console", round(statistics.median(a for a, _ in pairs)), "MiB",
                  how + ": gpus[].mem_used_mb, median")
        nv.figure("GPU memory used, nvidia-smi", round(statistics.median(b for _, b in pairs)),
                  "MiB", "nvidia-smi --query-gpu=memory.used right after each reading, median")
        diff = max(abs(a - b) for a, b in pairs)
        nv.figure("memory difference, largest", round(diff), "MiB", "|console - nvidia-smi| "
                  "(NVML's memory info v1, which the console reads, may count the driver's "
                  "reserved memory that nvidia-smi lists apart)")
        tol = max(1024.0, 0.05 * statistics.median(b for _, b in pairs))
        nv.check(f"memory plausible: within {tol:.0f} MiB of nvidia-smi", diff <= tol)
    diffs = [d for r in rows for d in r["proc_diff"]]
    if diffs:
        nv.figure("per-process memory difference, largest", round(max(diffs)), "MiB",
                  "|console usedGpuMemory - nvidia-smi --query-compute-apps used_memory|, same pid")
    return last


def _container_fallback(ctx: Ctx, nv: Step, gpu: dict, folds: dict, keys: list[str],
                        pids: dict, foreign: int) -> None:
    """The console's attribution as it runs inside a container, where NVML's pids (the host's)
    match none of ours: the same NVML processes, hidden from the pid match."""
    attribute, OurRun = console_attribution()
    procs = [(p["pid"], p["used_mb"], False) for p in gpu["processes"]]
    runs = [OurRun(k, f"gpu{ctx.index}", set(), folds[k].get("peak_mem_mb")) for k in keys]
    owner = attribute({ctx.index: procs}, runs)
    got = {pid: key for (_, pid), key in owner.items()}
    ok = set(got) == set(pids.values()) and set(got.values()) == set(keys)
    exact = all(got.get(pids[k]) == k for k in keys)
    nv.check("container fallback: our two processes to our two runs, the foreign one foreign", ok,
             f"attributed {got}; truth {dict((v, k) for k, v in pids.items())}; foreign {foreign}")
    nv.fact("container fallback, run for each pid",
            "as by pid" if exact else "swapped between the two folds (equal configurations: the "
            "memory order cannot tell them apart)",
            f"{CONSOLE_GPU_OWNERS}.attribute() on this reading's NVML processes with every pid "
            "marked not visible, runs' peak_mem_mb from status --json")


def _kill_and_resume(ctx: Ctx, kr: Step, exp: Path, key: str, run: dict) -> None:
    run_dir, old_pid = run.get("run_dir"), run["pid"]
    until = min(time.monotonic() + 60, ctx.deadline - 60)
    while True:       # mid-epoch: an `iter` event after the last `epoch` event, then at once
        ev = read_jsonl(Path(run_dir) / "metrics.jsonl")
        epochs = [e for e in ev if e.get("event") == "epoch"]
        last_epoch_t = epochs[-1]["t"] if epochs else 0
        iters = [e for e in ev if e.get("event") == "iter" and e.get("t", 0) > last_epoch_t]
        if epochs and iters:
            t_kill = time.time()
            _killpg(old_pid)              # the run's session: trainer and its data workers
            break
        if time.monotonic() > until:
            raise StepError(f"{key}: no iteration after an epoch within 60 s")
        time.sleep(0.05)
    # what was announced before the kill (an epoch may have ended between reading and killing)
    epochs = [e for e in _events_since(run_dir, "epoch") if e["t"] <= t_kill]
    iters = [e for e in _events_since(run_dir, "iter", epochs[-1]["t"]) if e["t"] <= t_kill] or iters
    done = max(e["epoch"] for e in epochs) + 1
    kr.fact("killed", f"{key}, pid {old_pid}, SIGKILL to its process group, in epoch {done} "
            f"(0-based) after iteration {iters[-1]['iter']}", "this script")
    until = min(time.monotonic() + (120 if ctx.gpu else 90), ctx.deadline - 30)
    start = first = None
    while time.monotonic() < until and first is None:
        starts = _events_since(run_dir, "start", t_kill)
        start = starts[0] if starts else None
        if start:
            after = _events_since(run_dir, "epoch", start["t"])
            first = after[0] if after else None
        time.sleep(0.3)
    if start is None:
        raise StepError(f"{key} was not restarted within {time.time() - t_kill:.0f} s of the kill")
    resumed = start.get("resumed_from")
    kr.figure("epochs completed before the kill", done, "epochs", "metrics.jsonl epoch events")
    kr.figure("iterations of the epoch in progress at the kill", iters[-1]["iter"], "iterations",
              "the last `iter` event before the kill (a lower bound); redone after the resume")
    kr.figure("resumed from", resumed, "epochs", "metrics.jsonl start.resumed_from of the restart")
    if resumed is not None:
        kr.figure("epochs lost", max(0, done - resumed), "epochs",
                  "epochs announced before the kill - resumed_from (a checkpoint saved but not "
                  "yet announced counts as kept)")
    kr.figure("kill to restart", round(start["t"] - t_kill, 1), "s",
              "SIGKILL to the restarted trainer's start event (watchdog backoff 1 s included)")
    if first is not None:
        kr.figure("kill to the first epoch after the resume", round(first["t"] - t_kill, 1), "s",
                  "SIGKILL to the restarted trainer's first epoch event")
    kr.check("resumed at the epoch the kill interrupted (no epoch lost)",
             resumed is not None and resumed >= done,
             f"resumed_from {resumed}, epochs done {done}")
    kr.check("an epoch completed after the resume", first is not None)
    new = _folds(status_json(ctx, exp))[key]
    kr.fact("after the restart", f"device {new.get('device')}, pid {new.get('pid')}, "
            f"restarts {new.get('restarts')}", "foldwatch status --json")
    if ctx.gpu:
        env = proc_env(new["pid"]) if new.get("pid") else None
        kr.check(f"restarted on the same GPU (gpu{ctx.index}, CUDA_VISIBLE_DEVICES={ctx.index})",
                 new.get("device") == f"gpu{ctx.index}" and (env or {}).get(
                     "CUDA_VISIBLE_DEVICES") == str(ctx.index),
                 f"device {new.get('device')}, CUDA_VISIBLE_DEVICES "
                 f"{(env or {}).get('CUDA_VISIBLE_DEVICES')}")
        kr.finish()
    else:
        kr.note(f"Dry run ({ctx.skip_why}): killed and resumed on a CPU slot; on a GPU the same "
                "code also checks that the restart lands on the same GPU.")
        kr.finish()


# -- 5. the trainer: pipeline vs bare loop, data wait, memory ---------------------------------------
def step_trainer(ctx: Ctx) -> None:
    s = Step("trainer", ctx.folder)
    folder = ctx.work / "trainer"
    shutil.rmtree(folder, ignore_errors=True)
    if ctx.gpu:      # the plan's patch and batch (nnU-Net's rules, 8 GB target), default widths
        cfgs = {c: {"patch_size": "auto", "batch_size": "auto"} for c in ("2d", "3d_fullres")}
        iterations, chunk = 100, 5
    else:            # the dry run proves the code once, on the configuration with more to do
        cfgs = {"3d_fullres": {"patch_size": [16, 32, 32], "batch_size": 2, "base_features": 4,
                               "max_features": 8, "num_workers": "auto"}}
        iterations, chunk = 2, 1
    exp = write_yaml(folder / "trainer.yaml", {
        "experiment": "trainer", "dataset": str(ctx.data), "results": str(folder / "results"),
        "folds": [0], "configurations": cfgs, "previews": {"enabled": False}})
    ctx.run(trainer("plan", "--experiment", str(exp)), timeout=90)
    for c in cfgs:
        ctx.run(trainer("preprocess", "--experiment", str(exp), "--configuration", c), timeout=90)
    for c in cfgs:
        out = folder / f"throughput-{c}.json"
        ctx.run([sys.executable, str(ROOT / "bench" / "trainer_throughput.py"), "--experiment",
                 str(exp), "--configuration", c, "--iterations", str(iterations), "--chunk",
                 str(chunk), "--json", str(out)], timeout=150)
        d = json.loads(out.read_text())
        how = (f"bench/trainer_throughput.py: {d['iterations']} steps of each, alternating chunks "
               f"of {d['chunk']}, patch {d['patch_size']}, batch {d['batch']}, features "
               f"{d['features'][0]}-{d['features'][1]}, AMP {'on' if d['amp'] else 'off'}, "
               f"{d['workers']} data workers (num_workers: {d['num_workers']}), {d['device']}")
        s.fact(f"{c} set-up", how, "bench/trainer_throughput.py --json")
        s.figure(f"{c}: pipeline", d["pipeline_samples_per_s"], "samples/s",
                 "the real data path (sampling, oversampling, nnU-Net's augmentations, DataLoader "
                 "workers) feeding the fold trainer's step")
        s.figure(f"{c}: bare loop", d["bare_samples_per_s"], "samples/s",
                 "the same step on one batch already in memory, same run")
        s.figure(f"{c}: pipeline / bare", round(d["ratio"], 3), "ratio",
                 "the two figures above (target >= 0.9, docs/training.md)")
        s.figure(f"{c}: data-wait fraction", round(d["data_wait_frac"], 3), "fraction",
                 "time waiting for the next batch / pipeline time (target < 0.05)")
        if ctx.gpu:
            s.check(f"{c}: AMP on, on CUDA", d["amp"] and d["device"].startswith("cuda"),
                    f"amp {d['amp']}, device {d['device']}")
            s.fact(f"{c}: targets (ratio >= 0.9, data wait < 5 %)",
                   "met" if d["ratio"] >= 0.9 and d["data_wait_frac"] < 0.05 else "not met",
                   "docs/training.md, Training speed")
        _memory(ctx, s, exp, c, d)
    if not ctx.gpu:
        s.note(f"Dry run ({ctx.skip_why}): the pipeline, the bare loop and probe-memory ran on "
               "the CPU for 3d_fullres (2d runs the same code) with tiny sizes; the figures "
               "only prove the step works. Peak GPU memory is left out.")
    s.finish()


def _memory(ctx: Ctx, s: Step, exp: Path, c: str, d: dict) -> None:
    batch = d["batch"]
    r = ctx.run(trainer("probe-memory", "--experiment", str(exp), "--configuration", c,
                        "--batch-sizes", str(batch), "--amp", "on", "--checkpointing", "off",
                        "--widths", "1", "--steps", "3" if ctx.gpu else "2", "--json"),
                timeout=120)
    probe = json.loads(r.stdout[r.stdout.index("{"):])["candidates"][0]
    vram = d.get("vram_plan") or {}
    plan_gb = None
    if vram.get("estimate") and vram.get("reference"):
        plan_gb = (vram["target_gb"] * batch * vram["estimate"]
                   / (vram["reference"] * vram["reference_batch"]))
        s.figure(f"{c}: the plan's estimate", round(plan_gb, 3), "GB",
                 f"nnU-Net's static estimate: vram_target_gb {vram['target_gb']} x batch {batch} "
                 f"x {vram['estimate']} feature-map elements / (reference {vram['reference']:.3g} "
                 f"x {vram['reference_batch']}) (plans/{c}.json extra.vram)")
    if "peak_mb" not in probe:
        s.check(f"{c}: probe-memory answered", False, probe.get("error", "no peak"))
        return
    what = "peak reserved (CUDA allocator)" if ctx.gpu else "peak RSS of the process"
    s.figure(f"{c}: probe-memory's prediction", round(probe["peak_mb"]), "MiB",
             f"python -m trainer probe-memory --batch-sizes {batch} --amp on: {what}")
    if not ctx.gpu:
        return
    s.figure(f"{c}: measured peak reserved", round(d["peak_reserved_mb"]), "MiB",
             "torch.cuda.max_memory_reserved over the timed steps of the bench above")
    s.figure(f"{c}: measured peak allocated", round(d["peak_allocated_mb"]), "MiB",
             "torch.cuda.max_memory_allocated over the same steps")
    s.figure(f"{c}: measured / probe-memory", round(d["peak_reserved_mb"] / probe["peak_mb"], 3),
             "ratio", "peak reserved of the bench / probe-memory's, same run")
    if plan_gb:
        s.figure(f"{c}: measured / plan's estimate",
                 round(d["peak_reserved_mb"] / 1024 / plan_gb, 3), "ratio",
                 "peak reserved (GiB) / the plan's estimate (GB, nnU-Net's unit), same run")


# -- 6. nnU-Net v2 beside foldwatch's trainer ----------------------------------------------------------
def _nnunet_tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def _fold_figures(exp_results: Path, key: str, run_dir: str) -> dict:
    """A fold's epochs, timed from its launch (the console's `launch` decision, before the
    trainer's imports and start-up: both sides are timed the same way)."""
    launch = next((e["t"] for e in read_jsonl(exp_results / "console" / "events.jsonl")
                   if e.get("run") == key and e.get("action") == "launch"), None)
    epochs = [e for e in read_jsonl(Path(run_dir) / "metrics.jsonl") if e.get("event") == "epoch"]
    if launch is None or not epochs:
        raise StepError(f"{exp_results.name}: no launch decision or no epoch event for {key}")
    return {"t0": launch, "epochs": epochs,
            "epoch_s": statistics.median(e["epoch_s"] for e in epochs if e.get("epoch_s")),
            "first": epochs[0]["t"] - launch, "wall": epochs[-1]["t"] - launch}


def step_nnunet(ctx: Ctx, a) -> None:
    s = Step("nnunet", ctx.folder)
    if importlib.util.find_spec("nnunetv2") is None or not _nnunet_tool(
            "nnUNetv2_plan_and_preprocess"):
        s.finish("skipped", "nnunetv2 is not installed here (its wheels: `make gpu-wheels`; "
                 "or `pip install 'foldwatch[nnunet]'`)")
        return
    folder = ctx.work / "nnunet"
    shutil.rmtree(folder, ignore_errors=True)
    if ctx.gpu:
        raw, dataset, cfg = ctx.work / "data", "Dataset900_Demo", "3d_fullres"
        epochs, its, val = a.nnunet_epochs, a.nnunet_iterations, 5
        workers = max(1, min(8, len(os.sched_getaffinity(0)) // 2))   # foldwatch's `auto`
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from nnunet_fixture import DATASET, make_tiny_dataset
        raw, dataset, cfg = folder / "raw", DATASET, "2d"
        make_tiny_dataset(raw)
        epochs, its, val, workers = 2, 2, 1, 0      # 0: batches made in the trainer's process
    roots = {"raw": str(raw), "preprocessed": str(folder / "pre"), "results": str(folder / "nn")}
    env = dict(ctx.env, nnUNet_raw=roots["raw"], nnUNet_preprocessed=roots["preprocessed"],
               nnUNet_results=roots["results"], nnUNet_compile="f")
    devices = {"gpus": [ctx.index], "runs_per_gpu": 1, "cpu_slots": 1}
    off = {"evaluate": False, "find_best": False, "postprocess": False, "predict_test": False}
    dataset_id = int(dataset[7:10])
    nn_exp = write_yaml(folder / "nnunet-side.yaml", {
        "experiment": "nnunet-side", "trainer": "nnunetv2", "results": str(folder / "runs"),
        "folds": [0], "configurations": {cfg: {}},
        "nnunet": {"dataset": dataset_id, **roots, "plan": True, "npz": False, "epochs": epochs,
                   "iterations_per_epoch": its, "val_iterations": val, "workers": workers,
                   "processes": max(1, workers), "verify_dataset_integrity": False},
        "devices": devices, "pipeline": off, "watchdog": {"stall_timeout_s": 300, "max_restarts": 1}})
    t = time.monotonic()
    r = ctx.run(fw("up", str(nn_exp), "--headless"), timeout=ctx.left() * 0.6,
                log=ctx.folder / "nnunet-side.log", env=env, check=False)
    if r.returncode != 0:
        raise StepError(f"nnU-Net side: foldwatch up exited {r.returncode}: {_tail(r.stdout)}")
    s.figure("nnU-Net side, whole run", round(time.monotonic() - t, 1), "s",
             "foldwatch up --headless: nnUNetv2_plan_and_preprocess + one fold")
    plans = json.loads(next((folder / "pre").glob("Dataset*/nnUNetPlans.json")).read_text())
    pc = plans["configurations"][cfg]
    patch, batch = pc["patch_size"], pc["batch_size"]
    feats = pc.get("architecture", {}).get("arch_kwargs", {}).get("features_per_stage") or [32, 320]
    s.fact("patch and batch (both sides)", f"patch {patch}, batch {batch}, features "
           f"{feats[0]}-{max(feats)}, {epochs} epochs x {its} iterations, {val} validation "
           f"iterations per epoch, {workers} data workers", "nnU-Net's nnUNetPlans.json, "
           "given to foldwatch's trainer as patch_size / batch_size / base_features / max_features")
    nn_run = _folds(status_json(ctx, nn_exp))[f"{cfg}/0"]
    fw_exp = write_yaml(folder / "foldwatch-side.yaml", {
        "experiment": "foldwatch-side", "dataset": str(raw / dataset),
        "results": str(folder / "runs"), "folds": [0],
        "configurations": {cfg: {"patch_size": patch, "batch_size": batch, "epochs": epochs,
                                 "iterations_per_epoch": its, "val_iterations": val,
                                 "learning_rate": 0.01, "base_features": feats[0],
                                 "max_features": max(feats),
                                 "num_workers": "auto" if ctx.gpu else 0}},
        "devices": devices, "pipeline": off, "previews": {"enabled": False}})
    t = time.monotonic()
    r = ctx.run(fw("up", str(fw_exp), "--headless"), timeout=ctx.left() - 10,
                log=ctx.folder / "foldwatch-side.log", check=False)
    if r.returncode != 0:
        raise StepError(f"foldwatch side: foldwatch up exited {r.returncode}: {_tail(r.stdout)}")
    s.figure("foldwatch side, whole run", round(time.monotonic() - t, 1), "s",
             "foldwatch up --headless: plan, preprocess + one fold")
    fw_run = _folds(status_json(ctx, fw_exp))[f"{cfg}/0"]
    fw_plan = json.loads((folder / "runs" / "foldwatch-side" / "plans" / f"{cfg}.json").read_text())
    s.check("equal patch and batch", fw_plan["patch_size"] == patch and fw_plan["batch_size"] == batch,
            f"foldwatch's plan: patch {fw_plan['patch_size']}, batch {fw_plan['batch_size']}")
    runs = folder / "runs"
    sides = {"nnU-Net": _fold_figures(runs / "nnunet-side", f"{cfg}/0", nn_run["run_dir"]),
             "foldwatch": _fold_figures(runs / "foldwatch-side", f"{cfg}/0", fw_run["run_dir"])}
    for name, f in sides.items():
        s.figure(f"{name}: iterations/s", its / f["epoch_s"], "iterations/s",
                 f"{its} training iterations / the median epoch time ({f['epoch_s']:.2f} s, the "
                 f"trainer's own, {val} validation iterations included) over {len(f['epochs'])} epochs")
        s.figure(f"{name}: samples/s", its * batch / f["epoch_s"], "samples/s",
                 "iterations/s x batch")
        s.figure(f"{name}: launch to first epoch", round(f["first"], 1), "s",
                 "the console's launch of the fold (console/events.jsonl) to its first epoch "
                 "event (start-up, data workers and one epoch)")
        s.figure(f"{name}: launch to last epoch", round(f["wall"], 1), "s",
                 "the console's launch of the fold to its last epoch event")
    ratio = sides["foldwatch"]["epoch_s"] and sides["nnU-Net"]["epoch_s"] / sides["foldwatch"]["epoch_s"]
    s.figure("foldwatch / nnU-Net iterations/s", round(ratio, 3), "ratio", "the two figures above")
    w = min(f["wall"] for f in sides.values())
    for name, f in sides.items():
        reached = [e for e in f["epochs"] if e["t"] - f["t0"] <= w + 1e-6]
        ema = reached[-1].get("ema_dice") if reached else None
        s.figure(f"{name}: EMA pseudo-Dice {w:.0f} s after launch",
                 ema if ema is not None else "n/a (no epoch yet)", "Dice",
                 f"the last epoch event within {w:.0f} s of the fold's launch (the faster side's "
                 f"whole training); epochs done by then: {len(reached)}")
    for name, path in (("nnU-Net", next((folder / "nn").glob(
            f"Dataset*/nnUNetTrainer__nnUNetPlans__{cfg}/fold_0/validation/summary.json"), None)),
            ("foldwatch", Path(fw_run["run_dir"]) / "validation" / "summary.json")):
        if path is None or not path.exists():
            s.check(f"{name}: validation summary written", False, str(path))
            continue
        fg = (json.loads(path.read_text()).get("foreground_mean") or {}).get("Dice")
        s.figure(f"{name}: validation Dice after {epochs * its} iterations", fg, "Dice",
                 "foreground mean over fold 0's whole validation cases (summary.json, nnU-Net's "
                 "metrics), after the same number of iterations")
    s.note("nnU-Net runs with nnUNet_compile=f (eager, as foldwatch's trainer): torch.compile's "
           "minutes of compilation would not pay off in a run this short.")
    if not ctx.gpu:
        s.note(f"Dry run ({ctx.skip_why}): both sides ran on the CPU on the tiny 2d dataset of "
               "tests/nnunet_fixture.py; the figures only prove the step works.")
    s.finish()


# -- 7. the demo ----------------------------------------------------------------------------------------
def readme_demo_figures() -> tuple[dict[str, list[float]], str | None]:
    """The README's CPU demo table (row -> organ, lesion, foreground mean) and its wall time."""
    text = (ROOT / "README.md").read_text()
    rows = {}
    for label in DEMO_ROWS:
        m = re.search(r"^\| " + re.escape(label) + r" \|(.*)$", text, re.M)
        if m:
            rows[label] = [float(v) for v in re.findall(r"\d\.\d+", m.group(1))[:3]]
    wall = re.search(r"prediction\) took ([^(]+?) \(", text)
    return rows, wall.group(1).strip() if wall else None


def step_demo(ctx: Ctx) -> None:
    s = Step("demo", ctx.folder)
    folder = ctx.work / "demo"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if not ctx.gpu:      # `foldwatch demo` keeps an existing demo.yaml: a tiny one for the dry run
        import yaml
        d = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
        d.update(dataset="Dataset900_Demo", results="results", folds=[0])
        for c in d["configurations"].values():
            c.update(epochs=1, iterations_per_epoch=2, val_iterations=1, base_features=4,
                     max_features=8)
        write_yaml(folder / "demo.yaml", d)
    t = time.monotonic()
    log = ctx.folder / "demo.log"
    demo = ctx.spawn(fw("demo", str(folder), "--headless"), log)
    while demo.poll() is None and ctx.left() > 20:
        time.sleep(0.5)
    wall = time.monotonic() - t
    if demo.poll() is None:          # out of time: say how far it got, then stop it
        st = status_json(ctx, folder / "demo.yaml")
        done = [r["key"] for r in st["runs"] if r["state"] == "completed"]
        s.figure("runs completed when the time ran out", len(done), f"of {len(st['runs'])} runs",
                 f"foldwatch status --json after {wall:.0f} s")
        try:
            ctx.run(fw("stop", str(folder / "demo.yaml")), timeout=15, check=False)
        except StepError:
            pass
        _killpg(demo.pid)
        s.finish("failed", f"did not finish within its {wall:.0f} s; run it alone: --steps demo")
        return
    s.figure("wall time", round(wall, 1), "s", "foldwatch demo DIR --headless, whole command: "
             "data generation, plan, preprocessing, 10 folds, cross-validation, find-best, "
             "test prediction" if ctx.gpu else "foldwatch demo --headless with a 1-fold, "
             "1-epoch demo.yaml")
    if not s.check("foldwatch demo --headless exit 0", demo.returncode == 0,
                   "" if demo.returncode == 0 else _tail(log.read_text(errors="replace"))):
        s.finish()
        return
    res = status_json(ctx, folder / "demo.yaml").get("results") or {}
    ours = {sv["name"]: sv for sv in res.get("configurations") or []}
    if res.get("test"):
        ours["test"] = res["test"]
    readme, readme_wall = readme_demo_figures()
    for label, key in DEMO_ROWS.items():
        if key == "chosen":
            value = res.get("chosen_dice")
            how = f"find-best's choice {'+'.join(res.get('chosen') or [])}: best_configuration.json"
        else:
            sv = ours.get(key) or {}
            value = sv.get("foreground_dice")
            per = ", ".join(f"{k} {v:.3f}" for k, v in (sv.get("per_class") or {}).items()
                            if v is not None)
            how = f"{sv.get('path', '-')} foreground mean ({per})"
        s.figure(label, value if value is not None else "n/a", "Dice",
                 "foldwatch status --json results: " + how)
        if label in readme:
            s.fact(f"README (CPU, 2 cores): {label}", " / ".join(f"{v:.3f}" for v in readme[label])
                   + " (organ / lesion / foreground mean)", "README.md, The demo")
    if readme_wall:
        s.fact("README (CPU, 2 cores): wall time", readme_wall, "README.md, The demo")
    if not ctx.gpu:
        s.note(f"Dry run ({ctx.skip_why}): the demo ran on the CPU with a 1-fold, 1-epoch "
               "demo.yaml; its Dice is not comparable with the README's.")
    s.finish()


# -- the run ------------------------------------------------------------------------------------------
def _ensure_data(ctx: Ctx) -> None:
    if not (ctx.data / "dataset.json").exists():
        ctx.run(trainer("make-demo-data", str(ctx.data), "--seed", "0"), timeout=60)


def run_group(group: str, state: dict) -> None:
    """In a child process (its own session): one group of steps, within its deadline."""
    args = argparse.Namespace(**state)
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")     # torch's indices = NVML's
    folder = Path(state["work"]) / "steps"
    ctx = Ctx(args, folder, time.monotonic() + state["deadline"] - time.time())
    try:
        if group in ("two_runs", "trainer") or (group == "nnunet" and ctx.gpu):
            _ensure_data(ctx)
        if group == "nnunet":
            step_nnunet(ctx, args)
        else:
            globals()[f"step_{group}"](ctx)
    except Exception as e:       # StepError: a reason for people; anything else: a bug to see
        import traceback
        why = str(e) if isinstance(e, StepError) else _tail(traceback.format_exc(), 4)
        for name in dict((g, n) for g, n, *_ in GROUPS)[group]:
            path = folder / f"{name}.json"
            d = json.loads(path.read_text()) if path.exists() else {
                "name": name, "title": TITLES[name], "figures": [], "checks": [], "facts": [],
                "notes": []}
            if d.get("status") in (None, "running"):
                d.update(status="failed", why=why)
                _atomic_write(path, json.dumps(d, indent=1, default=str))
        raise SystemExit(1)


def ensure_packages(a) -> None:
    """Missing packages from the wheels in .whl/ (into a folder outside the repo), then this
    script again with that folder on PYTHONPATH; the torch already here is kept."""
    missing = [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]
    wanted = missing + (["nnunetv2"] if importlib.util.find_spec("nnunetv2") is None else [])
    wheels = sorted(Path(a.wheels).glob("*.whl"))
    if os.environ.get("FOLDWATCH_GPU_CHECK_SITE") or not wheels or not wanted:
        if missing:
            raise SystemExit(f"gpu_check: missing Python packages {', '.join(missing)}: run "
                             "`make venv` (or carry wheels made by `make gpu-wheels` in .whl/)")
        return
    site = Path(a.site)
    stamp = site / ".foldwatch-wheels"
    names = "\n".join(w.name for w in wheels)
    t = time.monotonic()
    if not stamp.exists() or stamp.read_text() != names:
        print(f"installing {len(wheels)} wheels from {a.wheels} into {site} (missing: "
              f"{', '.join(wanted)}) ...", flush=True)
        shutil.rmtree(site, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site),
                        *map(str, wheels)], check=True)
        stamp.write_text(names)
    env = dict(os.environ, FOLDWATCH_GPU_CHECK_SITE=str(site),
               FOLDWATCH_GPU_CHECK_INSTALL_S=f"{time.monotonic() - t:.1f}",
               FOLDWATCH_GPU_CHECK_T0=str(time.time() - (time.monotonic() - t)))
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)] + [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PATH"] = str(site / "bin") + os.pathsep + os.environ.get("PATH", "")
    os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]], env)


def detect_gpu(a) -> tuple[bool, str | None, str | None]:
    """(GPU present, its name, NVML's message) from the console's own sampler."""
    try:
        sampler = console_sampler()()
        r = sampler.sample_now()
        sampler.close()
    except Exception as e:
        return False, None, f"{type(e).__name__}: {e}"
    if r.available is True and r.gpus:
        if a.gpu >= len(r.gpus):
            raise SystemExit(f"gpu_check: --gpu {a.gpu}: this machine has {len(r.gpus)} GPU(s)")
        return True, r.gpus[a.gpu].name, None
    return False, None, r.message


def pack_logs(work: Path, target: Path, limit: int = 8 * 2**20) -> None:
    """The steps' and the runs' logs in one archive beside the report (a failure's whole
    story comes back from a machine that is gone by the time anyone reads it)."""
    import tarfile
    tmp = target.with_name(target.name + ".tmp")
    total = 0
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(work.rglob("*.log")):
            size = path.stat().st_size
            if total + size > limit:
                continue
            total += size
            tar.add(path, arcname=str(path.relative_to(work)))
    os.replace(tmp, target)


def cleanup(work: Path, since: float) -> list[int]:
    """Our leftovers: processes started by this run whose command line or environment names
    its work folder (trainers, data workers, nnU-Net's workers, the foreign process)."""
    import psutil
    me = psutil.Process()
    spared = {me.pid} | {p.pid for p in me.parents()}
    marker, victims = str(work), []
    for p in psutil.process_iter(["pid", "cmdline", "create_time"]):
        try:
            if p.pid in spared or p.info["create_time"] < since - 1:
                continue
            hit = marker in " ".join(p.info["cmdline"] or [])
            if not hit:
                hit = any(marker in v for v in p.environ().values())
        except psutil.Error:
            continue
        if hit:
            victims.append(p)
    for p in victims:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(victims, timeout=10)
    return [p.pid for p in victims]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "gpu-check",
                    help="where gpu-check.json and gpu-check.md go (default results/gpu-check)")
    ap.add_argument("--work", type=Path, help="datasets and runs (default: a new temp folder)")
    ap.add_argument("--steps", help="comma-separated groups: " + ", ".join(g for g, *_ in GROUPS))
    ap.add_argument("--dry-run", action="store_true",
                    help="the CPU-meaningful parts with tiny sizes, even on a GPU machine")
    ap.add_argument("--budget-s", type=float, help="overall time limit (default 480 on a GPU, "
                    "600 for the dry run)")
    ap.add_argument("--gpu", type=int, default=0, help="NVML index of the GPU to use (default 0)")
    ap.add_argument("--wheels", type=Path, default=WHEELS,
                    help="wheels to install what is missing from (default .whl/)")
    ap.add_argument("--site", type=Path, default=DEFAULT_SITE,
                    help=f"where wheels from .whl/ are installed (default {DEFAULT_SITE})")
    ap.add_argument("--parallel", type=int, default=2,
                    help="dry run only: groups after the dataset run this many at a time")
    ap.add_argument("--nnunet-epochs", type=int, default=8)
    ap.add_argument("--nnunet-iterations", type=int, default=50)
    ap.add_argument("--run-group", help=argparse.SUPPRESS)
    ap.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.run_group:
        run_group(a.run_group, json.loads(a.state.read_text()))
        return 0
    ensure_packages(a)
    # the budget counts from the first start, the installation of carried wheels included
    t_start = time.monotonic() - (time.time() - float(os.environ.get("FOLDWATCH_GPU_CHECK_T0")
                                                      or time.time()))
    present, gpu_name, nvml_message = detect_gpu(a)
    gpu = present and not a.dry_run
    skip_why = None if gpu else ("dry run asked for (--dry-run)" if a.dry_run
                                 else f"no NVIDIA GPU (NVML: {nvml_message})")
    budget = a.budget_s or (480.0 if gpu else 600.0)
    work = (a.work or Path(tempfile.mkdtemp(prefix="foldwatch-gpu-check-"))).resolve()
    folder = work / "steps"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    wanted = [g for g, *_ in GROUPS] if not a.steps else [x.strip() for x in a.steps.split(",")]
    if set(wanted) & {"two_runs", "trainer", "nnunet", "demo"}:
        wanted.append("dataset")              # made once, before the groups that read it
    unknown = set(wanted) - {g for g, *_ in GROUPS}
    if unknown:
        raise SystemExit(f"gpu_check: --steps {','.join(sorted(unknown))}: no such group; groups "
                         "are " + ", ".join(g for g, *_ in GROUPS))
    report = {"schema": 1, "mode": "gpu" if gpu else "dry-run", "mode_reason": skip_why,
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "budget_s": budget,
              "argv": sys.argv[1:], "work": str(work),
              "machine": {"gpu": gpu_name, "gpu_index": a.gpu if gpu else None,
                          "cores": len(os.sched_getaffinity(0)), "host": os.uname().nodename},
              "install_s": _num(os.environ.get("FOLDWATCH_GPU_CHECK_INSTALL_S", "")),
              "steps": []}
    print(f"foldwatch GPU check: {report['mode']}" + (f" ({skip_why})" if skip_why else
          f" on GPU {a.gpu}: {gpu_name}") + f"; budget {budget:.0f} s; work {work}", flush=True)

    results: dict[str, list[dict]] = {}

    def save() -> None:
        report["steps"] = [d for g, *_ in GROUPS for d in results.get(g, [])]
        report["elapsed_s"] = round(time.monotonic() - t_start, 1)
        _atomic_write(out / "gpu-check.json", json.dumps(report, indent=1, default=str))
        _atomic_write(out / "gpu-check.md", render_markdown(report))
        try:
            pack_logs(work, out / "gpu-check-logs.tar.gz")
        except OSError as e:
            print(f"logs not packed: {e}", flush=True)

    def placeholder(n: str, status: str, why: str | None) -> dict:
        return {"name": n, "title": TITLES[n], "status": status, "why": why, "wall_s": 0,
                "figures": [], "checks": [], "facts": [], "notes": []}

    def start(group: str, names: list[str], cap: float) -> dict:
        state = {"work": str(work), "mode": report["mode"], "skip_why": skip_why, "gpu": a.gpu,
                 "forced_dry": a.dry_run and present, "deadline": time.time() + cap - 3,
                 "nnunet_epochs": a.nnunet_epochs, "nnunet_iterations": a.nnunet_iterations}
        state_path = work / f"state-{group}.json"
        state_path.write_text(json.dumps(state))
        results[group] = [placeholder(n, "running", None) for n in names]
        child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--run-group",
                                  group, "--state", str(state_path)], cwd=ROOT,
                                 stdout=open(folder / f"{group}.log", "ab"),
                                 stderr=subprocess.STDOUT, start_new_session=True)
        return {"group": group, "names": names, "child": child, "t0": time.monotonic(),
                "since": time.time(), "cap": cap}

    def collect(run: dict, end: str | None) -> bool:
        """The group's step results (a killed or crashed group's steps: failed, saying so)."""
        group, child = run["group"], run["child"]
        left_over = cleanup(work / GROUP_DIRS[group], run["since"])
        log_tail = _tail((folder / f"{group}.log").read_text(errors="replace"))
        steps, bad = [], False
        for n in run["names"]:
            path = folder / f"{n}.json"
            d = json.loads(path.read_text()) if path.exists() else placeholder(n, "running", None)
            if d.get("status") in (None, "running"):
                d["status"], d["why"] = "failed", end or (
                    f"ended (exit {child.returncode}) without a result: {log_tail}")
            if left_over:
                d["notes"].append(f"{len(left_over)} leftover processes ended after the step")
            d["wall_s"] = d.get("wall_s") or round(time.monotonic() - run["t0"], 1)
            steps.append(d)
            bad |= d["status"] == "failed"
            print(f"[{time.monotonic() - t_start:5.0f}s] {n}: {d['status']}"
                  + (f": {d['why']}" if d.get("why") else ""), flush=True)
        results[group] = steps
        save()
        return bad

    # The first groups alone and in order (the dataset before everything that reads it); the
    # rest one at a time on a GPU (their figures are timings), `--parallel` at once in the
    # dry run, whose figures are not.
    parallel = 1 if gpu else max(1, a.parallel)
    queue, running, failed = list(GROUPS), [], False
    while queue or running:
        while queue and len(running) < parallel and not (
                running and (queue[0][0] in SERIAL or any(r["group"] in SERIAL for r in running))):
            group, names, cap_gpu, cap_dry, least = queue.pop(0)
            left = budget - (time.monotonic() - t_start) - 5
            cap = min(cap_gpu if gpu else cap_dry, left)
            why = None
            if group not in wanted:
                why = "not selected (--steps)"
            elif cap < least:
                why = (f"budget: {max(left, 0):.0f} s left of {budget:.0f} s, this step needs "
                       f"about {least} s or more; run it alone: --steps {group}")
            if why:
                results[group] = [placeholder(n, "skipped", why) for n in names]
                save()
                continue
            running.append(start(group, names, cap))
            save()
        time.sleep(0.2)
        for run in list(running):
            end = None
            if run["child"].poll() is None:
                if time.monotonic() - run["t0"] < run["cap"]:
                    continue
                _killpg(run["child"].pid)
                run["child"].wait()
                end = f"timed out after {run['cap']:.0f} s (its time limit)"
            running.remove(run)
            failed |= collect(run, end)
    save()
    print(f"wrote {out / 'gpu-check.json'}, {out / 'gpu-check.md'} and the logs "
          f"({report['elapsed_s']:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
