"""Atomic, weights_only-loadable checkpoints (latest.pt, best.pt, final.pt).

A save checks free space first (the atomic write needs room for a whole second copy) and
turns "disk full" into NoSpaceError (exit 74) naming the disk, what is free and what the
checkpoint needs; the previous file stays loadable either way.
"""

from __future__ import annotations

from pathlib import Path

import torch

from contracts.errors import ConfigError, NoSpaceError
from contracts.jsonio import atomic_write_file

from trainer.runtime.faults import fault_point
from trainer.runtime.folders import free_bytes, is_no_space

KINDS = ("latest", "best", "final")
REQUIRED_KEYS = ("format", "model", "optimizer", "epoch", "iter", "finished", "history",
                 "partial", "torch_rng", "configuration")
SPACE_MARGIN = 1.1          # torch's zip container adds a little to the tensors' bytes


def estimate_size(path: Path, state: dict) -> int:
    """Bytes the new file will take: its tensors' bytes, or the previous file's size if larger."""
    def nbytes(obj) -> int:
        if isinstance(obj, torch.Tensor):
            return obj.numel() * obj.element_size()
        if isinstance(obj, dict):
            return sum(nbytes(v) for v in obj.values())
        if isinstance(obj, (list, tuple)):
            return sum(nbytes(v) for v in obj)
        return 64
    try:
        previous = path.stat().st_size
    except OSError:
        previous = 0
    return max(previous, nbytes(state))


def save_checkpoint(path: str | Path, state: dict) -> None:
    """torch.save atomically: a kill at any instant leaves the previous checkpoint loadable."""
    path = Path(path)
    need = int(estimate_size(path, state) * SPACE_MARGIN)
    free = free_bytes(path.parent)
    if free is not None and free < need:
        raise NoSpaceError(path, free, need, what="checkpoint")
    try:
        fault_point("checkpoint-write")
        atomic_write_file(path, lambda f: torch.save(state, f))
    except (OSError, RuntimeError) as e:   # torch wraps a failed write in RuntimeError
        if is_no_space(e):
            raise NoSpaceError(path, free_bytes(path.parent), need,
                               what="checkpoint") from None
        raise


def _damaged(path: Path, why: str) -> ConfigError:
    """Which file is damaged, what intact copies exist, and what to do."""
    others = []
    for kind in KINDS:
        p = path.with_name(f"{kind}.pt")
        if p == path or not p.exists():
            continue
        try:
            ep = torch.load(p, map_location="cpu", weights_only=True).get("epoch")
            others.append((p, ep))
        except Exception:
            continue
    if others:
        p, ep = others[0]
        advice = (f"{p.name} is intact (epoch {ep}): move the damaged file aside (mv {path} "
                  f"{path}.damaged), copy {p.name} to {path.name} and resume to continue "
                  f"from epoch {ep}, or move the fold folder away to start over")
    else:
        names = "/".join(f"{k}.pt" for k in KINDS if k != path.stem)
        advice = (f"no intact {names} next to it: move the damaged file aside "
                  f"(mv {path} {path}.damaged) and resume to train the fold from the start")
    return ConfigError(f"{path}: checkpoint is damaged ({why}); {advice}")


def load_checkpoint(path: str | Path, map_location="cpu", configuration: str | None = None,
                    resume: bool = False) -> dict:
    """A checkpoint as saved (plain types and tensors only: weights_only=True).

    ConfigError for a truncated, foreign or other-configuration file, naming the file, the
    intact copies next to it and what to do. `resume`: training state must be complete
    (inference needs only the weights).
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # a truncated, garbled or foreign file: say which and what to do
        if "Weights only load failed" in str(e):
            why = "holds objects that a safe load refuses: not written by foldwatch"
        else:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            why = f"truncated or not a checkpoint: {first}"
        raise _damaged(path, why) from None
    if not isinstance(ckpt, dict):
        raise _damaged(path, f"holds a {type(ckpt).__name__}, not a foldwatch checkpoint")
    missing = [k for k in (REQUIRED_KEYS if resume else ("model",)) if k not in ckpt]
    if missing:
        raise _damaged(path, "not a foldwatch checkpoint: missing " + ", ".join(missing))
    if configuration is not None and ckpt.get("configuration", configuration) != configuration:
        raise ConfigError(f"{path}: checkpoint was written for configuration "
                          f"{ckpt['configuration']!r}, not {configuration!r}; it belongs to "
                          "another fold folder: move it back there or away")
    return ckpt
