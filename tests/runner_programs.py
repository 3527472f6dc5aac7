"""Training programs for console.runner tests that a test holds at chosen instants.

`python tests/runner_programs.py nnunet FOLDER EPOCHS FREE GATES`: writes a training log as
trainer.external.nnunet_fold does with nnU-Net 2.8.1 (stamped lines in
FOLDER/training_log_<date>.txt: `Epoch N`, the losses, `foldwatch checkpoint latest|best|final
epoch N+1 <path>` after each save, `Training done.`); resumes from checkpoint_latest.pth when
it exists (as --c). In each epoch from FREE on it waits, after `Current learning rate`, for
the file GATES/<epoch>; on SIGTERM it saves latest with the epoch in progress to be redone,
as the entry point does, and exits 0. With FAKE_WORKERS_DIE_AT=E and nnUNet_n_proc_DA > 1
it dies at the start of epoch E as nnU-Net does when its augmentation workers die.

`python tests/runner_programs.py command DIR EPOCHS FREE GATES [CHECKPOINT]`: prints
`Epoch N/EPOCHS train_loss=x` (N from 1) and then, from epoch FREE on once GATES/save<epoch>
exists, writes DIR/checkpoint_epoch<N>.pth (a temp file renamed); resumes after CHECKPOINT.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

stop: list[int] = []


def gate(gates: Path, name: str) -> bool:
    """Wait until the test opens the gate; False when a stop came first."""
    while not (gates / name).exists():
        if stop:
            return False
        time.sleep(0.01)
    return True


def nnunet(folder: Path, epochs: int, free: int, gates: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now()
    log = folder / (f"training_log_{now.year}_{now.month}_{now.day}_{now.hour:02d}_"
                    f"{now.minute:02d}_{now.second:02d}.txt")

    def say(text: str) -> None:
        with open(log, "a") as f:       # nnU-Net opens, appends and closes per line
            f.write(f"{datetime.fromtimestamp(time.time())}: {text} \n")

    def save(kind: str, done: int) -> None:
        path = folder / f"checkpoint_{kind}.pth"
        tmp = folder / f".{path.name}.tmp"
        tmp.write_text(str(done))
        tmp.replace(path)
        say(f"foldwatch checkpoint {kind} epoch {done} {path}")

    latest = folder / "checkpoint_latest.pth"
    first = int(latest.read_text()) if latest.exists() else 0
    die_at = int(os.environ.get("FAKE_WORKERS_DIE_AT", -1))
    for e in range(first, epochs):
        if e == die_at and int(os.environ.get("nnUNet_n_proc_DA", 0)) > 1:
            print("RuntimeError: One or more background workers are no longer alive. Exiting.",
                  file=sys.stderr)
            return 1
        say("")
        say(f"Epoch {e}")
        say(f"Current learning rate: {0.01 * (1 - e / epochs):.5f}")
        if e >= free and not gate(gates, str(e)):
            save("latest", e)       # mid-epoch: this epoch is redone on resume
            say(f"foldwatch stopped at epoch {e} on signal {stop[0]}")
            return 0
        say(f"train_loss {-0.1 * (e + 1):.4f}")
        say(f"val_loss {-0.1 * (e + 1) - 0.05:.4f}")
        say(f"Pseudo dice [np.float32({0.5 + 0.05 * e:.4f})]")
        say("Epoch time: 0.5 s")
        if e != epochs - 1:
            save("latest", e + 1)
    save("final", epochs)
    (folder / "checkpoint_latest.pth").unlink(missing_ok=True)
    say("Training done.")
    return 0


def command(folder: Path, epochs: int, free: int, gates: Path, checkpoint: str | None) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    first = int(Path(checkpoint).read_text()) if checkpoint else 0
    for e in range(first, epochs):
        print(f"Epoch {e + 1}/{epochs} train_loss={0.5 / (e + 1):.4f}", flush=True)
        if e >= free and not gate(gates, f"save{e}"):
            return 0
        path = folder / f"checkpoint_epoch{e + 1}.pth"
        tmp = folder / f".{path.name}.tmp"
        tmp.write_text(str(e + 1))
        tmp.replace(path)
    return 0


if __name__ == "__main__":
    for s in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(s, lambda signum, frame: stop.append(signum))
    what, folder, epochs, free, gates, *rest = sys.argv[1:]
    args = (Path(folder), int(epochs), int(free), Path(gates))
    sys.exit(nnunet(*args) if what == "nnunet" else command(*args, *(rest or [None])))
