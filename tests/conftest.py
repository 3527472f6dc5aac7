import os
import shutil
import subprocess

import pytest

# An illegal run-state transition is a bug: raise it in tests (and in consoles they start).
os.environ.setdefault("FOLDWATCH_STRICT_STATES", "1")


def _has_nvidia_gpu() -> bool:
    if not shutil.which("nvidia-smi"):
        return False
    try:
        return subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pytest_collection_modifyitems(config, items):
    if any("gpu" in item.keywords for item in items) and not _has_nvidia_gpu():
        skip = pytest.mark.skip(reason="needs an NVIDIA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _own_state_home(tmp_path_factory):
    """Supervisors note themselves for `foldwatch ls` under $XDG_STATE_HOME: never the real
    home's during tests (set for this process and every process it starts)."""
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("xdg-state"))
