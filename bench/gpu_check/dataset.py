"""The demo CT dataset, generated once for the steps that read it. On a GPU the demo's own
size (24 training, 6 test cases); in the dry run 10 and 2, enough for two folds, a kill and
the demo's pipeline, and less to plan, preprocess and predict."""

from __future__ import annotations

import time

from .context import Ctx, trainer
from .report import Step


def step_dataset(ctx: Ctx) -> None:
    s = Step("dataset", ctx.folder)
    t = time.monotonic()
    size = [] if ctx.gpu else ["--train", "10", "--test", "2"]
    if not (ctx.data / "dataset.json").exists():
        ctx.run(trainer("make-demo-data", ctx.data, "--seed", "0", "--force", *size), timeout=60)
    cases = len(list((ctx.data / "labelsTr").glob("*.nii.gz")))
    s.figure("training cases", cases, "cases", "labelsTr/*.nii.gz of the generated demo dataset")
    s.figure("generation time", round(time.monotonic() - t, 1), "s",
             "wall time of python -m trainer make-demo-data --seed 0 " + " ".join(size))
    s.finish()
