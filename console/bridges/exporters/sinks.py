"""The export targets. Heavy libraries are imported inside the constructors only."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path


def _rgb(png: Path):
    import numpy as np
    from PIL import Image
    with Image.open(png) as im:
        return np.asarray(im.convert("RGB"))


class TensorBoardSink:
    """Event files in the fold's tensorboard/ folder: `tensorboard --logdir results/EXP`."""

    name = "tensorboard"

    def __init__(self, logdir: Path) -> None:
        from tensorboardX import SummaryWriter
        # The file name has a 1-second timestamp: a writer restarted within the same second
        # would replace the previous file (losing its steps). A nanosecond suffix keeps the
        # names unique and in write order, which is the order TensorBoard reads them in.
        self.writer = SummaryWriter(logdir=str(logdir), flush_secs=30,
                                    filename_suffix=f".{time.time_ns():020d}")

    def scalars(self, series: str, step: int, values: dict[str, float]) -> None:
        for tag, v in values.items():
            self.writer.add_scalar(tag, v, global_step=step)

    def images(self, epoch: int, items: list[tuple[str, Path]]) -> None:
        for case, png in items:
            self.writer.add_image(f"preview/{case}", _rgb(png), global_step=epoch,
                                  dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def wandb_run_id(experiment: str, configuration: str, fold: int, generation: int = 0) -> str:
    """Stable across restarts, so every restart resumes the same W&B run; a fold started
    from scratch (generation 1, 2, ...) is a new run."""
    gen = f"-g{generation}" if generation else ""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{experiment}-{configuration}-fold{fold}{gen}")[:64]


class WandbSink:
    """One W&B run per fold (offline unless export.wandb.mode is online), grouped by
    experiment; step = epoch (iterations stay in TensorBoard: W&B steps must only grow)."""

    name = "wandb"

    def __init__(self, root: Path, experiment: str, configuration: str, fold: int,
                 generation: int = 0, *, project: str | None = None,
                 mode: str = "offline") -> None:
        os.environ["WANDB_MODE"] = mode             # the file decides, not the user's shell
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb
        self.run = wandb.init(
            project=project or experiment, group=experiment, job_type=configuration,
            name=f"{configuration}/fold_{fold}" + (f" (from scratch {generation})" if generation
                                                    else ""),
            id=wandb_run_id(experiment, configuration, fold, generation),
            resume="allow", dir=str(root), mode=mode, reinit="create_new",
            config={"configuration": configuration, "fold": fold},
            settings=wandb.Settings(console="off", x_disable_stats=True, silent=True))
        self._wandb = wandb

    def scalars(self, series: str, step: int, values: dict[str, float]) -> None:
        if series in ("epoch", "validation"):
            self.run.log(values, step=step)

    def images(self, epoch: int, items: list[tuple[str, Path]]) -> None:
        self.run.log({f"preview/{case}": self._wandb.Image(_rgb(png), caption=case)
                      for case, png in items}, step=epoch)

    def flush(self) -> None:
        pass                                          # W&B's service writes as it goes

    def close(self) -> None:
        self.run.finish()
