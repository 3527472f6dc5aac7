"""Atomic, weights_only-loadable checkpoints (latest.pt, best.pt, final.pt)."""

from __future__ import annotations

from pathlib import Path

import torch

from contracts.errors import ConfigError
from contracts.jsonio import atomic_write_file

KINDS = ("latest", "best", "final")


def save_checkpoint(path: str | Path, state: dict) -> None:
    """torch.save atomically: a kill at any instant leaves the previous checkpoint loadable."""
    atomic_write_file(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """A checkpoint as saved (plain types and tensors only: weights_only=True)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # a foreign or damaged file: say which and what to do
        raise ConfigError(f"{path}: not a loadable foldwatch checkpoint ({e}); move it away "
                          "and resume from another checkpoint or start the fold again") from None


def remove_stale_temps(folder: str | Path) -> None:
    """Temp files left by a kill during a save: never valid checkpoints, safe to delete."""
    for tmp in Path(folder).glob(".*.pt.*.tmp"):
        try:
            tmp.unlink()
        except OSError:
            pass
