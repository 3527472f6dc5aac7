"""nnU-Net's own W&B logger as foldwatch's nnU-Net entry point starts it
(trainer/external/nnunet_wandb.py), without training: W&B 0.31 itself makes the folder a
failed `wandb.init` leaves (a second init of a run that is still open: "run ID <id> is in
use"), nnU-Net 2.8.1's own `WandbLogger` shows that `--c` cannot read it, the repair points
`latest-run` back at the run, and nnU-Net's `WandbLogger` then continues that run. W&B runs
only in child processes: a `wandb.init` in the test process would leave its service to every
process the later tests start (WANDB_SERVICE), which is how the bug was found."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainer.external.nnunet_wandb import repair_latest_run
from wandb_reader import records
from wandb_service import foreign_service

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("nnunetv2") is None or importlib.util.find_spec("wandb") is None,
    reason="needs the nnunet and wandb extras (pip install '.[nnunet,wandb]')")

REPO = Path(__file__).resolve().parents[1]
RUN_ID = "abc123"

# Child processes. fail_after_open: W&B's own failed attempt (what a killed attempt's run left
# open in a shared service did to the resumed fold). start: foldwatch's start_wandb on a
# MetaLogger as nnU-Net's trainer holds it.
CHILD = r"""
import json, os, sys, time
import wandb
fold, what = sys.argv[1], sys.argv[2]
kw = dict(project="p", dir=fold, id="%(id)s", mode="offline", settings=wandb.Settings(silent=True))
if what == "fail_after_open":
    run = wandb.init(**kw)
    run.log({"train_losses": 0.9}, step=0)
    second = time.strftime("%%S")
    while time.strftime("%%S") == second:     # a new folder name: W&B's names have seconds
        time.sleep(0.05)
    try:
        wandb.init(resume="allow", reinit="create_new", **kw)
        print(json.dumps({"error": None}))
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
    run.finish()
else:
    from types import SimpleNamespace
    from nnunetv2.training.logging.nnunet_logger import MetaLogger
    from trainer.external.nnunet_wandb import start_wandb
    trainer = SimpleNamespace(output_folder=fold, logger=MetaLogger(fold, True))
    warnings = []
    ok = start_wandb(trainer, True, {"fold": 0}, warnings.append)
    if ok:
        trainer.logger.log("train_losses", 0.5, 1)
        trainer.logger.loggers[0].run.finish()
    print(json.dumps({"ok": ok, "warnings": warnings, "loggers": len(trainer.logger.loggers)}))
""" % {"id": RUN_ID}


def child(fold: Path, what: str, **env) -> dict:
    e = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    e.update(PYTHONPATH=str(REPO), nnUNet_wandb_enabled="0", nnUNet_wandb_mode="offline", **env)
    out = subprocess.run([sys.executable, "-c", CHILD, str(fold), what], capture_output=True,
                         text=True, timeout=180, env=e, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_ids(folder: Path) -> set[str]:
    """The run ids in a run folder's .wandb file, read with wandb's own records."""
    ids = set()
    for f in folder.glob("run-*.wandb"):
        deadline = time.monotonic() + 60           # the service writes the file as it exits
        while True:
            try:
                ids |= {r.run.run_id for r in records(f) if r.WhichOneof("record_type") == "run"}
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    return ids


@pytest.fixture(scope="module")
def failed_attempt(tmp_path_factory) -> Path:
    """A fold folder as W&B 0.31 leaves it: a good attempt, then one whose wandb.init failed."""
    fold = tmp_path_factory.mktemp("w") / "fold_0"
    fold.mkdir()
    out = child(fold, "fail_after_open")
    assert out["error"] == f"ServerResponseError: run ID {RUN_ID} is in use", out
    return fold


def copy_of(fold: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "fold_0"
    subprocess.run(["cp", "-a", str(fold), str(dest)], check=True)
    return dest


def test_failed_wandb_init_leaves_a_latest_run_that_nnunet_cannot_resume(failed_attempt, tmp_path):
    fold = copy_of(failed_attempt, tmp_path)
    wandb_dir = fold / "wandb"
    good, broken = sorted(wandb_dir.glob(f"offline-run-*-{RUN_ID}"))
    assert (good / f"run-{RUN_ID}.wandb").is_file() and not list(broken.glob("*.wandb"))
    assert os.readlink(wandb_dir / "latest-run") == broken.name
    # nnU-Net 2.8.1's own resume stops here, on every later attempt (the reported crash loop)
    from nnunetv2.training.logging.nnunet_logger import WandbLogger
    with pytest.raises(StopIteration):
        WandbLogger(str(fold), True)


def test_repair_points_latest_run_back_at_the_run_and_keeps_everything(failed_attempt,
                                                                      tmp_path):
    fold = copy_of(failed_attempt, tmp_path)
    wandb_dir = fold / "wandb"
    before = sorted(p.relative_to(fold) for p in fold.rglob("*"))
    good, broken = sorted(wandb_dir.glob(f"offline-run-*-{RUN_ID}"))
    note = repair_latest_run(fold)
    assert note and broken.name in note and good.name in note
    assert os.readlink(wandb_dir / "latest-run") == good.name        # relative, as W&B's
    assert sorted(p.relative_to(fold) for p in fold.rglob("*")) == before   # nothing removed
    assert repair_latest_run(fold) is None                          # nothing more to do


def test_start_wandb_repairs_and_nnunet_continues_the_run(failed_attempt, tmp_path):
    """The entry point's path: start_wandb repairs, says so, and nnU-Net's WandbLogger resumes
    the same run id into a new folder."""
    fold = copy_of(failed_attempt, tmp_path)
    good, broken = sorted((fold / "wandb").glob(f"offline-run-*-{RUN_ID}"))
    out = child(fold, "start")
    assert out["ok"] and out["loggers"] == 1, out
    assert len(out["warnings"]) == 1 and "no .wandb file" in out["warnings"][0]
    newest = sorted((fold / "wandb").glob(f"offline-run-*-{RUN_ID}"))[-1]
    assert newest not in (good, broken) and run_ids(newest) == {RUN_ID}
    assert os.readlink(fold / "wandb" / "latest-run") == newest.name


def test_no_readable_run_moves_wandb_aside_and_nnunet_starts_a_new_run(failed_attempt,
                                                                        tmp_path):
    fold = copy_of(failed_attempt, tmp_path)
    for f in (fold / "wandb").glob("*/run-*.wandb"):
        f.rename(f.with_suffix(".damaged"))       # no attempt with a readable run left
    files = sorted(p.relative_to(fold / "wandb") for p in (fold / "wandb").rglob("*"))
    note = repair_latest_run(fold)
    assert note and "starts a new W&B run" in note
    aside = next(fold.glob("wandb.unusable-*"))
    assert not (fold / "wandb").exists() and str(aside) in note
    assert sorted(p.relative_to(aside) for p in aside.rglob("*")) == files     # all kept
    out = child(fold, "start")
    assert out == {"ok": True, "warnings": [], "loggers": 1}, out
    (new,) = (fold / "wandb").glob("offline-run-*")
    assert run_ids(new) and run_ids(new) != {RUN_ID}


def test_wandb_that_cannot_start_leaves_the_fold_training_without_it(failed_attempt, tmp_path):
    """The reported failure itself: the run is still open in a W&B service the fold was told
    to use (an inherited WANDB_SERVICE: another process holds the run). The attempt goes on
    without W&B and says why."""
    fold = copy_of(failed_attempt, tmp_path)
    repair_latest_run(fold)
    with foreign_service(tmp_path / "holder", RUN_ID) as token:
        out = child(fold, "start", WANDB_SERVICE=token)
    assert out["ok"] is False and out["loggers"] == 0, out
    (warning,) = out["warnings"]
    assert f"run ID {RUN_ID} is in use" in warning and "trains without W&B" in warning
