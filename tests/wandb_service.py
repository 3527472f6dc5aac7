"""W&B's service processes (wandb 0.31: `wandb-core`, and its `wandb-symon`) in tests: a
foreign service holding a run, as a process that used W&B before starting foldwatch leaves
one to its children through WANDB_SERVICE; and the service processes a run started."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

# Holds run argv[2] open in its own W&B service and prints the service's token, as a process
# that started foldwatch after using W&B (or a killed attempt's run in a shared service).
HOLDER = r"""
import os, sys, wandb
run = wandb.init(project="p", dir=sys.argv[1], id=sys.argv[2], mode="offline",
                 settings=wandb.Settings(silent=True))
print(os.environ["WANDB_SERVICE"], flush=True)
sys.stdin.read()
run.finish()
"""


@contextlib.contextmanager
def foreign_service(folder: Path, run_id: str = "foreign"):
    """A live W&B service of another process, with run `run_id` open in it: its token."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), run_id],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        token = holder.stdout.readline().strip()
        assert token, "the holder process printed no WANDB_SERVICE"
        yield token
    finally:
        holder.stdin.close()
        holder.wait(timeout=120)


def wandb_processes(run_dir: Path) -> dict[int, str]:
    """pid -> name of the live W&B service processes started inside run `run_dir` (their
    environment has the runner's FOLDWATCH_RUN_DIR; zombies have no command line)."""
    mark = f"FOLDWATCH_RUN_DIR={run_dir}".encode()
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            name = os.path.basename((d / "cmdline").read_bytes().split(b"\0")[0].decode())
            if name in ("wandb-core", "wandb-symon") and mark in \
                    (d / "environ").read_bytes().split(b"\0"):
                found[int(d.name)] = name
        except OSError:
            continue
    return found
