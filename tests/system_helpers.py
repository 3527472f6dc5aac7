"""What tests take from the machine: a small real disk (tmpfs, as root) and Debian packages
installed on demand (as root, once for all xdist workers). Each says why not when it can't,
so the test that needs it skips with that reason."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path


@contextlib.contextmanager
def small_disk(where: Path, size_kb: int):
    """A real tmpfs of `size_kb` mounted at `where`; yields None, or why it cannot be had."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        yield "mounting a small tmpfs needs root"
        return
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        yield f"cannot mount a tmpfs here ({r.stderr.strip()})"
        return
    try:
        yield None
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def debian_program(program: str, package: str | None = None) -> tuple[str | None, str]:
    """The program's path, installing its Debian package when root; else (None, why not)."""
    package = package or program
    exe = shutil.which(program)
    if exe:
        return exe, "already installed"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, (f"{program} is not installed and this is not a root Debian shell "
                      f"(apt-get install -y {package})")
    from filelock import FileLock
    with FileLock(f"/tmp/foldwatch-{package}-install.lock"):   # one install for xdist workers
        if not shutil.which(program):
            t0 = time.monotonic()
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                   "-o", "DPkg::Lock::Timeout=600", package]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0 and "Unable to locate package" in out.stderr:
                subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env)
                out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                return None, f"apt-get install {package} failed: {out.stderr.strip()[-300:]}"
            print(f"installed {package} in {time.monotonic() - t0:.0f} s")
    exe = shutil.which(program)
    return (exe, "installed") if exe else (None, f"apt-get installed no {program} binary")
