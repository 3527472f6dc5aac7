import os
import shutil
import subprocess

import pytest

# An illegal run-state transition is a bug: raise it in tests (and in consoles they start).
os.environ.setdefault("FOLDWATCH_STRICT_STATES", "1")

# `make test` runs the suite on every core (pytest -n auto --dist loadgroup
# --no-loadscope-reorder): the work queue follows the order below, so the longest tests start
# first, each on its own worker, and the short ones fill in around them at the end; a file
# not named keeps its collection place after these.
LONG_FIRST = (
    "test_nnunet_cascade.py",     # real nnU-Net: plan, 4 folds, 4 predictions, 2 ensembles
    "test_nnunet_kind.py",        # real nnU-Net: plan, 2 folds stopped/killed and resumed, ...
    "test_transfer_nnunet.py",    # real nnUNetv2_train, then nnU-Net's find-best on the import
    "slurm",                      # the Slurm group: mostly waiting on the real slurmctld
    "test_supervisor_chaos.py",   # the real trainer under 10 SIGKILLs of its supervisor
    "test_transfer_pipeline.py",  # two results folders, the real trainer, pack and import
    "test_gpu_check.py",          # the GPU check's dry run
    "test_predict.py",
    "test_train_resume.py",
    "test_cascade_train.py",
    "test_train_demo.py",
    "test_engine_real_trainer.py",
    "test_train_safety.py",
    "test_cascade_regions.py",
    "test_crash_points.py",
    "test_app_tty.py",
)


def _has_nvidia_gpu() -> bool:
    if not shutil.which("nvidia-smi"):
        return False
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _uses_slurm(item) -> bool:
    return "slurm" in item.keywords or "slurm_cluster" in getattr(item, "fixturenames", ())


def _module_fixture(item) -> bool:
    """Whether the test shares a module- or package-scoped fixture with its neighbours."""
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    return any(d[-1].scope in ("module", "package") for d in defs if d)


def _rank(item) -> int:
    key = "slurm" if _uses_slurm(item) else item.path.name
    return LONG_FIRST.index(key) if key in LONG_FIRST else len(LONG_FIRST)


# tryfirst: xdist's own hook turns the xdist_group marks into node ids after this one.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not _has_nvidia_gpu():
        skip = pytest.mark.skip(reason="needs an NVIDIA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
    for item in items:
        if _uses_slurm(item):
            # One worker for every Slurm test: they share one cluster, and each test's
            # teardown cancels the jobs named fw-* that are left.
            item.add_marker(pytest.mark.xdist_group("slurm"))
        elif _module_fixture(item):
            # A module-scoped fixture (a planned demo, a trained fold) is built once, not
            # once per worker.
            item.add_marker(pytest.mark.xdist_group(item.path.name))
    items.sort(key=_rank)      # stable: collection order within a rank


@pytest.fixture(scope="session", autouse=True)
def _state_home(tmp_path_factory):
    """XDG_STATE_HOME of this session (per xdist worker): what foldwatch keeps in the
    user's state folder (the supervisors' registry) never touches the real home, and the
    processes the tests start inherit it."""
    old = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = ours = str(tmp_path_factory.mktemp("xdg-state"))
    yield
    _end_supervisors(ours)
    if old is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = old


def _end_supervisors(state_home: str) -> None:
    """Supervisors this session's tests started and left lingering (a finished experiment's
    waits `supervisor.linger_s` before it exits): SIGTERM, as `foldwatch down` would, so no
    test leaves a process behind on the machine."""
    import psutil
    mine = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if "console.supervisor" in (proc.info["cmdline"] or []) and \
                    proc.environ().get("XDG_STATE_HOME") == state_home:
                proc.terminate()
                mine.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    _, alive = psutil.wait_procs(mine, timeout=10)
    for proc in alive:
        proc.kill()
