"""`trainer: nnunetv2` and folds trained by a plain `nnUNetv2_train` elsewhere (issue #20): bob
plans and trains fold 0 with nnU-Net alone (nnU-Net's own entry point, 1 epoch: tests/
nnunet_plain_train.py), alice plans the same dataset on her own and imports bob's fold folder;
nnU-Net's own find-best then reads the imported fold. The zip of nnUNetv2_export_model_to_zip is
refused for what it lacks, a fold from other splits for its validation cases; an imported
nnunetv2 fold packs and imports again (--replace moves both of its folders aside)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from console.clients.cli.main import main as foldwatch
from console.engine.core import Engine
from contracts.events import validate_event
from contracts.jsonio import iter_jsonl
from engine_helpers import REPO, cpu_sampler
from nnunet_fixture import DATASET, make_tiny_dataset

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nnunetv2") is None,
                                reason="needs the nnunet extra (pip install '.[nnunet]')")

MODEL = "nnUNetTrainer_tiny__nnUNetPlans__2d"


def roots(machine: Path) -> dict[str, str]:
    return {"nnUNet_raw": str(machine / "raw"), "nnUNet_preprocessed": str(machine / "pre"),
            "nnUNet_results": str(machine / "res")}


def env(machine: Path, **more: str) -> dict[str, str]:
    return dict(os.environ, **roots(machine), nnUNet_def_n_proc="1", OMP_NUM_THREADS="1",
                PYTHONPATH=str(REPO), **more)


def plan(machine: Path) -> subprocess.Popen:
    make_tiny_dataset(machine / "raw", cases=8)
    return subprocess.Popen([shutil.which("nnUNetv2_plan_and_preprocess",
                                          path=os.path.dirname(sys.executable)),
                             "-d", "901", "-c", "2d", "-np", "1", "-npfp", "1"],
                            env=env(machine), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def finish(p: subprocess.Popen, timeout: int = 600) -> str:
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, out[-3000:]
    return out


def cli(capsys, *args) -> tuple[int, str]:
    rc = foldwatch([str(a) for a in args])
    got = capsys.readouterr()
    return rc, got.out + got.err


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.timeout(1200)
def test_a_fold_of_plain_nnunetv2_train_imports_and_feeds_find_best(tmp_path, capsys):
    bob, alice = tmp_path / "bob", tmp_path / "alice"
    planning = [plan(bob), plan(alice)]
    for p in planning:
        finish(p)
    trained = subprocess.run([sys.executable, str(REPO / "tests" / "nnunet_plain_train.py"),
                              "901", "2d", "0", "-device", "cpu", "--npz"],
                             env=env(bob, nnUNet_n_proc_DA="0"),   # augmentation in-process
                             capture_output=True, text=True, timeout=900)
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-2000:]
    fold = bob / "res" / DATASET / MODEL / "fold_0"
    assert (fold / "checkpoint_final.pth").exists()
    zipped = tmp_path / "bob.zip"
    exported = subprocess.run([shutil.which("nnUNetv2_export_model_to_zip",
                                            path=os.path.dirname(sys.executable)),
                               "-d", "901", "-o", str(zipped), "-c", "2d", "-tr",
                               "nnUNetTrainer_tiny", "-f", "0"], env=env(bob),
                              capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr[-2000:]

    exp = tmp_path / "nn.yaml"
    exp.write_text(yaml.safe_dump({
        "experiment": "nn", "trainer": "nnunetv2", "results": str(tmp_path / "results"),
        "folds": [0, 1], "configurations": {"2d": {}},
        "nnunet": {"dataset": 901, "trainer": "nnUNetTrainer_tiny", "raw": roots(alice)["nnUNet_raw"],
                   "preprocessed": roots(alice)["nnUNet_preprocessed"],
                   "results": roots(alice)["nnUNet_results"]}}))
    mine = alice / "res" / DATASET / MODEL
    run_dir = tmp_path / "results" / "nn" / "2d" / "fold_0"

    # the export zip has no validation predictions: find-best could not use the fold
    rc, said = cli(capsys, "import", exp, zipped)
    assert rc == 2
    assert "2d/0 lacks validation/" in said and "find-best reads them" in said
    assert "--exp_cv_preds" in said and "import the fold folder itself" in said
    assert not mine.exists() and not run_dir.exists()

    # splits that hold out other cases in fold 0: refused, naming the cases
    splits = json.loads((bob / "pre" / DATASET / "splits_final.json").read_text())
    other = [{"train": s["val"] + s["train"][2:], "val": s["train"][:2]} for s in splits]
    theirs = alice / "pre" / DATASET / "splits_final.json"
    theirs.write_text(json.dumps(other))
    rc, said = cli(capsys, "import", exp, fold)
    assert rc == 2, said
    assert "2d/0: validation cases of fold 0: the fold validated " + ", ".join(
        sorted(splits[0]["val"])) in said
    theirs.unlink()

    # the fold folder itself: checked against alice's plans and fingerprint, imported
    rc, said = cli(capsys, "import", exp, fold)
    assert rc == 0, said
    assert "imported 2d/0" in said and "could not be checked (no splits_final.json" in said
    got, sent = digests(mine / "fold_0"), digests(fold)
    assert got == sent                       # every file of nnU-Net's fold, byte for byte
    for name in ("plans.json", "dataset.json", "dataset_fingerprint.json"):
        assert (mine / name).read_bytes() == (fold.parent / name).read_bytes()
    events = list(iter_jsonl(run_dir / "metrics.jsonl"))
    assert [e["event"] for e in events][0] == "start" and events[-1]["event"] == "end"
    assert events[-1]["status"] == "completed" and any(e["event"] == "epoch" for e in events)
    assert all(validate_event(e) == [] for e in events), [validate_event(e) for e in events]
    origin = json.loads((run_dir / "origin.json").read_text())
    debug = json.loads((fold / "debug.json").read_text())
    assert origin["trained_on"] == debug["hostname"] and origin["source"]["kind"] == "nnunet-folder"
    with Engine(exp, read_only=True, sampler=cpu_sampler()) as eng:
        states = {r.key: r.state for r in eng.poll().runs}
    assert states["2d/0"] == "completed" and states["2d/1"] != "completed"

    # nnU-Net's own find-best reads the imported fold as one it trained
    best = subprocess.run([shutil.which("nnUNetv2_find_best_configuration",
                                        path=os.path.dirname(sys.executable)),
                           "901", "-c", "2d", "-tr", "nnUNetTrainer_tiny", "-f", "0",
                           "--disable_ensembling", "-np", "1"], env=env(alice),
                          capture_output=True, text=True, timeout=600)
    assert best.returncode == 0, best.stdout[-2000:] + best.stderr[-2000:]
    cv = json.loads((mine / "crossval_results_folds_0" / "summary.json").read_text())
    assert sorted(os.path.basename(c["prediction_file"]) for c in cv["metric_per_case"]) == \
        sorted(f"{c}.nii.gz" for c in splits[0]["val"])

    # an imported nnunetv2 fold packs like any other, and --replace keeps both old folders
    archive = tmp_path / "again.tar"
    rc, said = cli(capsys, "pack", exp, "--runs", "2d/0", "-o", archive)
    assert rc == 0, said
    rc, said = cli(capsys, "import", exp, archive)
    assert rc == 2 and "2d/0 exists here (completed" in said
    rc, said = cli(capsys, "import", exp, archive, "--replace")
    assert rc == 0, said
    assert len(list(mine.glob("fold_0.old-*"))) == 1
    assert len(list(run_dir.parent.glob("fold_0.old-*"))) == 1
    assert digests(mine / "fold_0") == sent
    assert json.loads((run_dir / "origin.json").read_text())["source"]["kind"] == "foldwatch-archive"
